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
