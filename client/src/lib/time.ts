// Ordering of the server's ISO 8601 timestamps ("2026-11-25T20:15:03.123456Z"). Date.parse()
// drops microseconds, so two updates within the same millisecond would compare equal; this
// compares the full precision when both timestamps are UTC ("Z") and falls back to Date.parse.

const ISO_UTC = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$/;

export function compareTimestamps(a: string | null | undefined, b: string | null | undefined): number {
  if (!a || !b) return 0;
  const ma = ISO_UTC.exec(a);
  const mb = ISO_UTC.exec(b);
  if (ma && mb) {
    if (ma[1] !== mb[1]) return ma[1] < mb[1] ? -1 : 1;
    const fa = (ma[2] ?? '').padEnd(9, '0');
    const fb = (mb[2] ?? '').padEnd(9, '0');
    return fa === fb ? 0 : fa < fb ? -1 : 1;
  }
  const ta = Date.parse(a);
  const tb = Date.parse(b);
  if (Number.isNaN(ta) || Number.isNaN(tb)) return 0;
  return ta === tb ? 0 : ta < tb ? -1 : 1;
}

/** True when `candidate` is strictly older than `current` (equal timestamps are not stale). */
export function isOlder(candidate: string | null | undefined, current: string | null | undefined): boolean {
  return compareTimestamps(candidate, current) < 0;
}
