// Actions that change something or start something: editing, notebooks.
// Both stay hidden until the server reports that it supports them.

import { useState } from "preact/hooks";

import { apiUrl, describeError, sendJson } from "../api";
import { useCanEdit, useServer } from "../hooks";

/** The answer of `POST api/jupyter/spawn`. */
interface SpawnReply {
  url: string;
  path: string;
  mode: string;
}

/**
 * Open the run, or the runs, in a Jupyter notebook. Shown only when
 * `GET api/server` reports `"jupyter": true`.
 */
export function NotebookButton({ experiment, runs }: { experiment: string; runs: string[] }) {
  const server = useServer();
  const [state, setState] = useState<{ busy: boolean; error?: string }>({ busy: false });
  if (!server?.jupyter || runs.length === 0) return null;

  const open = async () => {
    // Open the window now, while the click still counts as a user action, so
    // that pop-up blockers allow it; it gets its address once the server answers.
    const target = window.open("about:blank", "_blank");
    setState({ busy: true });
    try {
      const body = runs.length === 1 ? { experiment, run: runs[0] } : { experiment, runs };
      const reply = await sendJson<SpawnReply>("POST", apiUrl("jupyter", "spawn"), body);
      if (target) target.location.href = reply.url;
      else window.open(reply.url, "_blank");
      setState({ busy: false });
    } catch (error) {
      target?.close();
      setState({ busy: false, error: `Cannot open a notebook: ${describeError(error)}` });
    }
  };

  return (
    <span class="notebook">
      <button type="button" class="button" onClick={open} disabled={state.busy} data-testid="notebook-button">
        {state.busy ? "Opening notebook…" : runs.length === 1 ? "Open in notebook" : `Open ${runs.length} runs in notebook`}
      </button>
      {state.error && (
        <span class="inline-error" role="alert">
          {state.error}
        </span>
      )}
    </span>
  );
}

interface Editable {
  description: string | null;
  tags: string[] | null;
}

/**
 * Edit the description and tags of an experiment or run with
 * `PATCH <url>`. Shown only when the server is writable and reports
 * `"editable": true`.
 */
export function EditMeta<T extends Editable>(props: { url: string; value: T; onSaved(updated: T): void }) {
  const canEdit = useCanEdit();
  const [editing, setEditing] = useState(false);
  const [description, setDescription] = useState("");
  const [tags, setTags] = useState("");
  const [state, setState] = useState<{ busy: boolean; error?: string }>({ busy: false });
  if (!canEdit) return null;

  if (!editing) {
    return (
      <button
        type="button"
        class="link-button"
        data-testid="edit-button"
        onClick={() => {
          setDescription(props.value.description ?? "");
          setTags((props.value.tags ?? []).join(", "));
          setState({ busy: false });
          setEditing(true);
        }}
      >
        Edit description and tags
      </button>
    );
  }

  const save = async (event: Event) => {
    event.preventDefault();
    setState({ busy: true });
    const body = {
      description: description.trim() || null,
      tags: tags.split(",").map((tag) => tag.trim()).filter(Boolean),
    };
    try {
      const updated = await sendJson<T>("PATCH", props.url, body);
      props.onSaved(updated);
      setEditing(false);
      setState({ busy: false });
    } catch (error) {
      setState({ busy: false, error: `Cannot save: ${describeError(error)}` });
    }
  };

  return (
    <form class="edit-form" onSubmit={save}>
      <label>
        Description
        <textarea value={description} rows={3} onInput={(event) => setDescription((event.target as HTMLTextAreaElement).value)} />
      </label>
      <label>
        Tags, separated by commas
        <input type="text" value={tags} onInput={(event) => setTags((event.target as HTMLInputElement).value)} />
      </label>
      <div class="edit-actions">
        <button type="submit" class="button primary" disabled={state.busy}>
          {state.busy ? "Saving…" : "Save"}
        </button>
        <button type="button" class="button" onClick={() => setEditing(false)} disabled={state.busy}>
          Cancel
        </button>
        {state.error && (
          <span class="inline-error" role="alert">
            {state.error}
          </span>
        )}
      </div>
    </form>
  );
}
