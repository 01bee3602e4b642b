// Exact decimal-string helpers. The server sends money, prices, quantities and percentages as
// decimal strings ("-1234.50"); we never turn them into floats for arithmetic, comparison or
// rounding, so nothing drifts (0.1 + 0.2 problems, 17-digit equities, …).

export interface ParsedDecimal {
  negative: boolean;
  /** integer digits, no leading zeros ("0" for zero) */
  int: string;
  /** fraction digits, no trailing zeros ("" for none) */
  frac: string;
}

const DECIMAL_RE = /^([+-])?(\d+)(?:\.(\d+))?$|^([+-])?\.(\d+)$/;

export function isDecimalString(value: string): boolean {
  return DECIMAL_RE.test(value.trim());
}

export function parseDecimal(value: string): ParsedDecimal | null {
  const m = DECIMAL_RE.exec(value.trim());
  if (!m) return null;
  const sign = m[1] ?? m[4];
  const intRaw = m[2] ?? '0';
  const fracRaw = m[3] ?? m[5] ?? '';
  const int = intRaw.replace(/^0+(?=\d)/, '');
  const frac = fracRaw.replace(/0+$/, '');
  const zero = /^0*$/.test(int) && frac === '';
  return { negative: sign === '-' && !zero, int: int === '' ? '0' : int, frac };
}

export function decimalToString(d: ParsedDecimal): string {
  return `${d.negative ? '-' : ''}${d.int}${d.frac ? '.' + d.frac : ''}`;
}

export function isZero(value: string): boolean {
  const d = parseDecimal(value);
  return d !== null && d.int === '0' && d.frac === '';
}

/** Sign of a decimal string: -1, 0 or 1 (0 for unparseable input). */
export function signOf(value: string): -1 | 0 | 1 {
  const d = parseDecimal(value);
  if (!d || (d.int === '0' && d.frac === '')) return 0;
  return d.negative ? -1 : 1;
}

function compareMagnitude(a: ParsedDecimal, b: ParsedDecimal): number {
  if (a.int.length !== b.int.length) return a.int.length < b.int.length ? -1 : 1;
  if (a.int !== b.int) return a.int < b.int ? -1 : 1;
  const len = Math.max(a.frac.length, b.frac.length);
  const af = a.frac.padEnd(len, '0');
  const bf = b.frac.padEnd(len, '0');
  if (af === bf) return 0;
  return af < bf ? -1 : 1;
}

/** Exact comparison of two decimal strings: -1, 0 or 1. Unparseable input compares as equal. */
export function compareDecimal(a: string, b: string): -1 | 0 | 1 {
  const da = parseDecimal(a);
  const db = parseDecimal(b);
  if (!da || !db) return 0;
  if (da.negative !== db.negative) return da.negative ? -1 : 1;
  const mag = compareMagnitude(da, db);
  if (mag === 0) return 0;
  const r = da.negative ? -mag : mag;
  return r < 0 ? -1 : 1;
}

/** Add one unit in the last place to a string of digits ("0999" -> "1000"). */
function incrementDigits(digits: string): string {
  const arr = digits.split('');
  let i = arr.length - 1;
  while (i >= 0) {
    if (arr[i] === '9') {
      arr[i] = '0';
      i -= 1;
    } else {
      arr[i] = String(Number(arr[i]) + 1);
      return arr.join('');
    }
  }
  return '1' + arr.join('');
}

/**
 * Round to `places` fraction digits, half away from zero (ROUND_HALF_UP, as the server does),
 * and pad with zeros to exactly `places` digits. Returns null for unparseable input.
 */
export function roundDecimal(value: string, places: number): string | null {
  const d = parseDecimal(value);
  if (!d) return null;
  let int = d.int;
  let frac = d.frac.padEnd(places, '0');
  if (frac.length > places) {
    const roundUp = frac.charCodeAt(places) >= 53; // '5'
    frac = frac.slice(0, places);
    if (roundUp) {
      const bumped = incrementDigits(int + frac);
      int = bumped.slice(0, bumped.length - places) || '0';
      frac = bumped.slice(bumped.length - places);
    }
  }
  const zero = /^0*$/.test(int) && /^0*$/.test(frac);
  return `${d.negative && !zero ? '-' : ''}${int}${places > 0 ? '.' + frac : ''}`;
}

/** Multiply by 10^exp exactly (exp may be negative): shiftDecimal("5.25", -2) === "0.0525". */
export function shiftDecimal(value: string, exp: number): string | null {
  const d = parseDecimal(value);
  if (!d) return null;
  let digits = d.int + d.frac;
  let point = d.int.length + exp;
  if (point <= 0) {
    digits = '0'.repeat(1 - point) + digits;
    point = 1;
  } else if (point > digits.length) {
    digits = digits.padEnd(point, '0');
  }
  return decimalToString(
    parseDecimal(`${d.negative ? '-' : ''}${digits.slice(0, point)}.${digits.slice(point) || '0'}`)!,
  );
}

/** Number of fraction digits needed to show the value exactly (after trimming trailing zeros). */
export function fractionDigits(value: string): number {
  return parseDecimal(value)?.frac.length ?? 0;
}

// --- exact arithmetic for totals and allocation (BigInt, scaled by 10^scale) ---

function toScaled(value: string, scale: number): bigint | null {
  const d = parseDecimal(value);
  if (!d) return null;
  const frac = d.frac.padEnd(scale, '0').slice(0, scale);
  const n = BigInt(d.int + frac);
  return d.negative ? -n : n;
}

function fromScaled(n: bigint, scale: number): string {
  const negative = n < 0n;
  const digits = (negative ? -n : n).toString().padStart(scale + 1, '0');
  const int = digits.slice(0, digits.length - scale);
  const frac = digits.slice(digits.length - scale);
  const s = `${negative ? '-' : ''}${int}${scale ? '.' + frac : ''}`;
  return decimalToString(parseDecimal(s)!);
}

/**
 * Exact sum of decimal strings. Returns null when any value is unparseable; `[]` sums to "0".
 * Example: sumDecimals(["0.1", "0.2"]) === "0.3" (a float gives 0.30000000000000004).
 */
export function sumDecimals(values: readonly string[]): string | null {
  const scale = Math.max(0, ...values.map(fractionDigits));
  let total = 0n;
  for (const v of values) {
    const n = toScaled(v, scale);
    if (n === null) return null;
    total += n;
  }
  return fromScaled(total, scale);
}

/** a − b, exactly; null when either is unparseable. */
export function subtractDecimals(a: string, b: string): string | null {
  const negB = parseDecimal(b);
  if (!negB) return null;
  return sumDecimals([a, decimalToString({ ...negB, negative: !negB.negative && !(negB.int === '0' && negB.frac === '') })]);
}

/** |value|, exactly. */
export function absDecimal(value: string): string | null {
  const d = parseDecimal(value);
  return d ? decimalToString({ ...d, negative: false }) : null;
}

/**
 * part / whole × 100, rounded ROUND_HALF_UP to `places` (default 2): the allocation percent of a
 * position. Null when whole is zero or either value is unparseable.
 */
export function percentOf(part: string, whole: string, places = 2): string | null {
  const scale = Math.max(fractionDigits(part), fractionDigits(whole));
  const p = toScaled(part, scale);
  const w = toScaled(whole, scale);
  if (p === null || w === null || w === 0n) return null;
  // (p / w) * 100 with `places + 1` extra digits, then round half away from zero.
  const extra = places + 1;
  const q = (p * 100n * 10n ** BigInt(extra)) / w;
  return roundDecimal(fromScaled(q, extra), places);
}

/** a × b, exactly (the scale is the sum of both); null when either is unparseable. */
export function multiplyDecimals(a: string, b: string): string | null {
  const sa = fractionDigits(a);
  const sb = fractionDigits(b);
  const na = toScaled(a, sa);
  const nb = toScaled(b, sb);
  if (na === null || nb === null) return null;
  return fromScaled(na * nb, sa + sb);
}
