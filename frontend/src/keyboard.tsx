// Keyboard shortcuts: "/" focuses the search box, "?" lists the keys, and in
// the runs table ↑/↓ (or j/k) move a highlight between runs, Enter opens the
// highlighted run and Space (or x) selects it. Keys typed into a text field
// stay there.

import { useEffect, useRef, useState } from "preact/hooks";

/** The keys the help dialog lists, in its order. */
const SHORTCUTS: [string[], string][] = [
  [["/"], "Focus the search box"],
  [["↓", "j"], "Highlight the next run in the runs table"],
  [["↑", "k"], "Highlight the previous run"],
  [["Enter"], "Open the highlighted run"],
  [["Space", "x"], "Select or unselect the highlighted run"],
  [["?"], "Show these keys"],
  [["Esc"], "Close this dialog, or leave the search box"],
];

/** Return whether a key event belongs to a field that takes text, where every key is typing. */
export function isTyping(event: KeyboardEvent): boolean {
  const target = event.target as HTMLElement | null;
  if (!target || !(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (!(target instanceof HTMLInputElement)) return false;
  return !["checkbox", "radio", "button", "submit", "reset", "range", "color", "file"].includes(target.type);
}

/** Return whether a key event belongs to a control that Enter or Space already activates (a button, link or checkbox). */
function isControl(event: KeyboardEvent): boolean {
  const target = event.target as HTMLElement | null;
  return target instanceof HTMLElement && target.closest("a, button, input, select, textarea, summary, label") !== null;
}

function hasModifier(event: KeyboardEvent): boolean {
  return event.ctrlKey || event.metaKey || event.altKey;
}

/** Focus the search box of the current view: the runs search, else the first search field. */
function focusSearch(): boolean {
  const box = document.querySelector<HTMLInputElement>('main input[type="search"]');
  if (!box) return false;
  box.focus();
  box.select();
  return true;
}

/** Render the page-wide shortcuts ("/", "?") and the dialog that lists the keys. */
export function KeyboardShortcuts() {
  const [open, setOpen] = useState(false);
  const dialog = useRef<HTMLDialogElement>(null);

  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (event.defaultPrevented || hasModifier(event)) return;
      if (event.key === "Escape" && isTyping(event) && event.target instanceof HTMLInputElement && event.target.type === "search") {
        event.target.blur();
        return;
      }
      if (isTyping(event)) return;
      if (event.key === "/" && focusSearch()) event.preventDefault();
      else if (event.key === "?") {
        event.preventDefault();
        setOpen(true);
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  useEffect(() => {
    const element = dialog.current;
    if (!element) return;
    if (open && !element.open) element.showModal();
    if (!open && element.open) element.close();
  }, [open]);

  return (
    <dialog
      ref={dialog}
      class="keys-dialog"
      aria-labelledby="keys-title"
      onClose={() => setOpen(false)}
      onClick={(event) => {
        // A click on the backdrop (the dialog element itself, outside its content) closes it.
        if (event.target === dialog.current) setOpen(false);
      }}
    >
      <div class="keys-content">
        <h2 id="keys-title">Keyboard shortcuts</h2>
        <table class="keys-table">
          <tbody>
            {SHORTCUTS.map(([keys, text]) => (
              <tr key={text}>
                <td>
                  {keys.map((key, index) => (
                    <span key={key}>
                      {index > 0 && <span class="muted"> or </span>}
                      <kbd>{key}</kbd>
                    </span>
                  ))}
                </td>
                <td>{text}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <p class="muted small">Keys do nothing while you type in a text field; Esc leaves the field.</p>
        <button type="button" class="button" onClick={() => setOpen(false)}>
          Close
        </button>
      </div>
    </dialog>
  );
}

export interface RowKeyActions {
  /** Open a run (Enter). */
  open(id: string): void;
  /** Select or unselect a run (Space or x). */
  toggle(id: string): void;
}

/**
 * Move a highlight through `ids` (the rows of a table, in order) with ↑/↓
 * and j/k, and act on the highlighted row with Enter, Space and x. Return
 * the highlighted id, or null before the first key. The highlighted row is
 * the one whose `data-run` attribute equals the id; it is scrolled into view.
 */
export function useRowKeys(ids: string[], actions: RowKeyActions): string | null {
  const [highlighted, setHighlighted] = useState<string | null>(null);
  const state = useRef({ ids, actions, highlighted });
  state.current = { ids, actions, highlighted };

  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (event.defaultPrevented || hasModifier(event) || isTyping(event)) return;
      // The keys belong to a dialog while one is open (the list of keys, for example).
      if (document.querySelector("dialog[open]")) return;
      const { ids, actions, highlighted } = state.current;
      if (!ids.length) return;
      const index = highlighted === null ? -1 : ids.indexOf(highlighted);
      let next: number | null = null;
      if (event.key === "ArrowDown" || event.key === "j") next = index < 0 ? 0 : Math.min(ids.length - 1, index + 1);
      else if (event.key === "ArrowUp" || event.key === "k") next = index < 0 ? 0 : Math.max(0, index - 1);
      if (next !== null) {
        event.preventDefault();
        setHighlighted(ids[next]);
        document.querySelector(`tr[data-run="${CSS.escape(ids[next])}"]`)?.scrollIntoView({ block: "nearest" });
        return;
      }
      if (index < 0 || isControl(event)) return;
      if (event.key === "Enter") {
        event.preventDefault();
        actions.open(ids[index]);
      } else if (event.key === " " || event.key === "x") {
        event.preventDefault();
        actions.toggle(ids[index]);
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, []);

  return highlighted !== null && ids.includes(highlighted) ? highlighted : null;
}
