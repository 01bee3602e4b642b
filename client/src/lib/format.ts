// Locale-aware display of the server's decimal strings. Values are rounded exactly with
// roundDecimal() and then handed to Intl.NumberFormat *as strings*: modern engines
// (Intl.NumberFormat v3) format a numeric string exactly, without going through a double.
import { fractionDigits, roundDecimal, shiftDecimal, signOf } from './decimal';

type FormatInput = string | null | undefined;

export const PLACEHOLDER = '—';

function defaultLocale(): string | undefined {
  if (typeof navigator !== 'undefined' && navigator.language) return navigator.language;
  return undefined;
}

const cache = new Map<string, Intl.NumberFormat>();
function numberFormat(locale: string | undefined, options: Intl.NumberFormatOptions): Intl.NumberFormat {
  const key = `${locale ?? ''}|${JSON.stringify(options)}`;
  let nf = cache.get(key);
  if (!nf) {
    nf = new Intl.NumberFormat(locale, options);
    cache.set(key, nf);
  }
  return nf;
}

function exact(nf: Intl.NumberFormat, rounded: string): string {
  // TypeScript's lib types the string overload as `${number}`; the value is a plain decimal.
  return nf.format(rounded as `${number}`);
}

export interface FormatOptions {
  locale?: string;
  /** show "+" for positive values (P&L) */
  signed?: boolean;
}

/** Money in USD with 2 decimals: "-1234.5" -> "-$1,234.50" (en-US) / "-1.234,50 $" (de-DE). */
export function formatMoney(value: FormatInput, opts: FormatOptions = {}): string {
  if (value == null) return PLACEHOLDER;
  const rounded = roundDecimal(value, 2);
  if (rounded === null) return PLACEHOLDER;
  const nf = numberFormat(opts.locale ?? defaultLocale(), {
    style: 'currency',
    currency: 'USD',
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
    signDisplay: opts.signed ? 'exceptZero' : 'auto',
  });
  return exact(nf, rounded);
}

/** Price per share: 2 to 4 decimals ("187.3" -> "$187.30", "0.1234" -> "$0.1234"). */
export function formatPrice(value: FormatInput, opts: FormatOptions = {}): string {
  if (value == null) return PLACEHOLDER;
  const places = Math.min(4, Math.max(2, fractionDigits(value)));
  const rounded = roundDecimal(value, places);
  if (rounded === null) return PLACEHOLDER;
  const nf = numberFormat(opts.locale ?? defaultLocale(), {
    style: 'currency',
    currency: 'USD',
    minimumFractionDigits: places,
    maximumFractionDigits: places,
  });
  return exact(nf, rounded);
}

/** Share quantity, fractional allowed, shown exactly ("0.5", "1,200"). */
export function formatQuantity(value: FormatInput, opts: FormatOptions = {}): string {
  if (value == null) return PLACEHOLDER;
  const places = Math.min(9, fractionDigits(value));
  const rounded = roundDecimal(value, places);
  if (rounded === null) return PLACEHOLDER;
  const nf = numberFormat(opts.locale ?? defaultLocale(), {
    minimumFractionDigits: places,
    maximumFractionDigits: places,
  });
  return exact(nf, rounded);
}

/** The server's percent strings are already percents ("5.25" means 5.25 %). */
export function formatPercent(value: FormatInput, opts: FormatOptions = {}): string {
  if (value == null) return PLACEHOLDER;
  const rounded = roundDecimal(value, 2);
  if (rounded === null) return PLACEHOLDER;
  const fraction = shiftDecimal(rounded, -2);
  if (fraction === null) return PLACEHOLDER;
  const nf = numberFormat(opts.locale ?? defaultLocale(), {
    style: 'percent',
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
    signDisplay: opts.signed ? 'exceptZero' : 'auto',
  });
  return exact(nf, fraction);
}

/** Arrow that goes with a signed value, so colour is never the only signal. */
export function trendArrow(value: FormatInput): '▲' | '▼' | '' {
  if (value == null) return '';
  const s = signOf(value);
  return s > 0 ? '▲' : s < 0 ? '▼' : '';
}

export function trendClass(value: FormatInput): 'gain' | 'loss' | 'flat' {
  if (value == null) return 'flat';
  const s = signOf(value);
  return s > 0 ? 'gain' : s < 0 ? 'loss' : 'flat';
}

/** "just now", "5s ago", "3m ago", "2h ago". */
export function formatAgo(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 1) return 'just now';
  if (s < 60) return `${s}s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.floor(m / 60);
  return `${h}h ago`;
}

export function formatTime(iso: string | null | undefined, locale?: string): string {
  if (!iso) return PLACEHOLDER;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return PLACEHOLDER;
  return new Intl.DateTimeFormat(locale ?? defaultLocale(), {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).format(new Date(t));
}

export function utcNowIso(): string {
  return new Date().toISOString();
}

/**
 * Date, time and time-zone name in the browser's zone and locale: "Nov 25, 2026, 3:15:03 PM EST".
 * Use {@link formatUtc} for the UTC form shown on hover.
 */
export function formatDateTime(iso: string | null | undefined, locale?: string, timeZone?: string): string {
  if (!iso) return PLACEHOLDER;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return PLACEHOLDER;
  return new Intl.DateTimeFormat(locale ?? defaultLocale(), {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    timeZoneName: 'short',
    ...(timeZone ? { timeZone } : {}),
  }).format(new Date(t));
}

/** The same instant in UTC, ISO-like: "2026-11-25 20:15:03 UTC" (the hover title). */
export function formatUtc(iso: string | null | undefined): string {
  if (!iso) return '';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  return `${new Date(t).toISOString().replace('T', ' ').slice(0, 19)} UTC`;
}
