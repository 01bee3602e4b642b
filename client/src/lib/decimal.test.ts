import { describe, expect, it } from 'vitest';
import { compareDecimal, isZero, parseDecimal, roundDecimal, shiftDecimal, signOf } from './decimal';
import { formatMoney, formatPercent, formatPrice, formatQuantity, trendArrow } from './format';
import { compareTimestamps } from './time';

describe('decimal strings', () => {
  it('parses and normalises', () => {
    expect(parseDecimal('-0012.500')).toEqual({ negative: true, int: '12', frac: '5' });
    expect(parseDecimal('-0.00')).toEqual({ negative: false, int: '0', frac: '' });
    expect(parseDecimal('1e5')).toBeNull();
    expect(parseDecimal('abc')).toBeNull();
  });

  it('rounds half up (away from zero) exactly', () => {
    expect(roundDecimal('1.005', 2)).toBe('1.01'); // 1.005 as a float rounds to 1.00
    expect(roundDecimal('-1.005', 2)).toBe('-1.01');
    expect(roundDecimal('2.675', 2)).toBe('2.68');
    expect(roundDecimal('9.999', 2)).toBe('10.00');
    expect(roundDecimal('-0.004', 2)).toBe('0.00');
    expect(roundDecimal('5', 2)).toBe('5.00');
    expect(roundDecimal('123456789012345678.125', 2)).toBe('123456789012345678.13');
  });

  it('compares without floats', () => {
    expect(compareDecimal('0.3', '0.30')).toBe(0);
    expect(compareDecimal('10.01', '9.99')).toBe(1);
    expect(compareDecimal('-5', '-4.99')).toBe(-1);
    expect(compareDecimal('-0', '0')).toBe(0);
    expect(compareDecimal('12345678901234567.01', '12345678901234567.02')).toBe(-1);
    expect(signOf('-0.01')).toBe(-1);
    expect(signOf('0.000')).toBe(0);
    expect(isZero('0')).toBe(true);
    expect(isZero('0.0')).toBe(true);
    expect(isZero('0.01')).toBe(false);
  });

  it('shifts the decimal point', () => {
    expect(shiftDecimal('5.25', -2)).toBe('0.0525');
    expect(shiftDecimal('-125', -2)).toBe('-1.25');
    expect(shiftDecimal('0.5', 3)).toBe('500');
  });

  it('orders timestamps to the microsecond', () => {
    expect(compareTimestamps('2026-11-25T20:15:03.123456Z', '2026-11-25T20:15:03.123457Z')).toBe(-1);
    expect(compareTimestamps('2026-11-25T20:15:03.1Z', '2026-11-25T20:15:03.100000Z')).toBe(0);
    expect(compareTimestamps('2026-11-25T20:15:04Z', '2026-11-25T20:15:03.999Z')).toBe(1);
  });
});

describe('formatting in the locale', () => {
  it('formats money', () => {
    expect(formatMoney('-1234.5', { locale: 'en-US' })).toBe('-$1,234.50');
    expect(formatMoney('1234.5', { locale: 'de-DE' })).toBe('1.234,50\u00a0$');
    expect(formatMoney('73.2', { locale: 'en-US', signed: true })).toBe('+$73.20');
    expect(formatMoney('0.00', { locale: 'en-US', signed: true })).toBe('$0.00');
    expect(formatMoney(null)).toBe('—');
    expect(formatMoney('oops')).toBe('—');
  });

  it('does not drift on large or tricky values', () => {
    expect(formatMoney('12345678901234567.89', { locale: 'en-US' })).toBe('$12,345,678,901,234,567.89');
    expect(formatMoney('0.1', { locale: 'en-US' })).toBe('$0.10');
    expect(formatMoney('1.005', { locale: 'en-US' })).toBe('$1.01');
  });

  it('formats prices with 2 to 4 decimals', () => {
    expect(formatPrice('187.32', { locale: 'en-US' })).toBe('$187.32');
    expect(formatPrice('187.3', { locale: 'en-US' })).toBe('$187.30');
    expect(formatPrice('0.1234', { locale: 'en-US' })).toBe('$0.1234');
    expect(formatPrice('0.123456', { locale: 'en-US' })).toBe('$0.1235');
  });

  it('formats quantities exactly', () => {
    expect(formatQuantity('1200', { locale: 'en-US' })).toBe('1,200');
    expect(formatQuantity('0.5', { locale: 'en-US' })).toBe('0.5');
    expect(formatQuantity('0.5', { locale: 'de-DE' })).toBe('0,5');
  });

  it('formats percent strings that are already percents', () => {
    expect(formatPercent('5.25', { locale: 'en-US' })).toBe('5.25%');
    expect(formatPercent('5.25', { locale: 'en-US', signed: true })).toBe('+5.25%');
    expect(formatPercent('-0.5', { locale: 'de-DE', signed: true })).toBe('-0,50\u00a0%');
  });

  it('gives an arrow so colour is not the only signal', () => {
    expect(trendArrow('1')).toBe('▲');
    expect(trendArrow('-1')).toBe('▼');
    expect(trendArrow('0')).toBe('');
  });
});
