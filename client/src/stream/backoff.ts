// Reconnect schedule (REQ-7): 1 s, 2 s, 4 s, 8 s, … capped at 30 s, up to 10 attempts.
export const BASE_DELAY_MS = 1000;
export const MAX_DELAY_MS = 30_000;
export const MAX_ATTEMPTS = 10;
/** ±20 % jitter so that many clients dropped by one restart do not reconnect in lockstep. */
export const JITTER = 0.2;

/** Nominal delay before reconnect attempt `attempt` (1-based), without jitter. */
export function nominalDelay(attempt: number, base = BASE_DELAY_MS, cap = MAX_DELAY_MS): number {
  const exp = Math.min(Math.max(attempt - 1, 0), 30);
  return Math.min(cap, base * 2 ** exp);
}

/**
 * Delay before reconnect attempt `attempt` with jitter. `random()` returns [0, 1); 0.5 gives the
 * nominal delay exactly. The result never exceeds the cap.
 */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  base = BASE_DELAY_MS,
  cap = MAX_DELAY_MS,
): number {
  const nominal = nominalDelay(attempt, base, cap);
  const factor = 1 + JITTER * (2 * random() - 1);
  return Math.round(Math.min(cap, nominal * factor));
}
