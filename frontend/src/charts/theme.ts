// The colour theme the system prefers, which chart colours follow.

import { useEffect, useMemo, useState } from "preact/hooks";

/** Return "dark" or "light" as the system setting is now, re-rendering the caller when it changes. */
export function useTheme(): string {
  const media = useMemo(() => window.matchMedia("(prefers-color-scheme: dark)"), []);
  const [dark, setDark] = useState(media.matches);
  useEffect(() => {
    const listener = () => setDark(media.matches);
    media.addEventListener("change", listener);
    return () => media.removeEventListener("change", listener);
  }, [media]);
  return dark ? "dark" : "light";
}
