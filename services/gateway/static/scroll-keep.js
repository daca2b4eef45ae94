// A reload leaves a page where its reader had scrolled it. The console draws a page once its
// data has come (after the document loaded), so the browser's own restoration finds a short
// document and leaves the page at its top. The position is kept here instead: saved as the
// document is left, and given back to the same page after a reload (or a return to it) once the
// page is tall enough, unless its reader scrolled, clicked or typed first. What matters most is
// the Terminal on a machine's page: xterm.js draws nothing while it is out of view (it pauses its
// renderer), so a terminal pushed below the fold by the reload showed an empty screen.
const KEY = "fleetd.scroll";
const RETURNS = new Set(["reload", "back_forward"]);
const READER_MOVES = ["wheel", "touchstart", "keydown", "pointerdown"];

/** Remember where the page was scrolled as the document is left (a reload, a navigation). */
export function keepScroll() {
  addEventListener("pagehide", () => {
    sessionStorage.setItem(KEY, JSON.stringify({ hash: location.hash, y: Math.round(scrollY) }));
  });
}

/** The position saved when this document's page was left, once: for its first page only. */
function savedPosition() {
  const text = sessionStorage.getItem(KEY);
  sessionStorage.removeItem(KEY);
  const navigation = performance.getEntriesByType("navigation")[0];
  if (!text || !RETURNS.has(navigation?.type)) return null;
  try {
    const saved = JSON.parse(text);
    return saved.hash === location.hash && Number.isFinite(saved.y) && saved.y > 0 ? saved.y : null;
  } catch {
    return null;
  }
}

/**
 * Scroll back to where this page was before the reload, as soon as `root` (the page drawn into
 * it as its data comes) is tall enough; given up when the reader moves first or leaves the page
 * (`signal`). Called once per route; only the first page after a load has a position to restore.
 */
export function restoreScroll(root, signal) {
  const y = savedPosition();
  if (y === null) return;
  const stop = new AbortController();
  const sizes = new ResizeObserver(() => {
    if (document.documentElement.scrollHeight - innerHeight < y) return;
    scrollTo(0, y);
    stop.abort();
  });
  stop.signal.addEventListener("abort", () => sizes.disconnect());
  signal.addEventListener("abort", () => stop.abort(), { signal: stop.signal });
  for (const move of READER_MOVES) {
    addEventListener(move, () => stop.abort(), {
      capture: true,
      passive: true,
      signal: stop.signal,
    });
  }
  sizes.observe(root);
}
