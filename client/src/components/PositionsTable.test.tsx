import { describe, expect, it } from 'vitest';
import { fireEvent, render, screen, within } from '@testing-library/react';
import { PositionsTable } from './PositionsTable';
import { AccountSummary } from './AccountSummary';
import { account, position } from '../test/fixtures';

const positions = [
  position('AAPL', { unrealizedPnl: '73.20', marketValue: '1873.20' }),
  position('MSFT', { unrealizedPnl: '-12.50', marketValue: '500.00' }),
  position('TSLA', { unrealizedPnl: '130.25', marketValue: '900.00' }),
];

const symbols = () =>
  within(screen.getByTestId('positions-table'))
    .getAllByRole('row')
    .map((r) => r.getAttribute('data-symbol'))
    .filter(Boolean);

describe('PositionsTable', () => {
  it('sorts by a header button, announcing the order with aria-sort', () => {
    render(<PositionsTable positions={positions} loading={false} fetchedAt={null} equity="100000.00" />);
    expect(symbols()).toEqual(['AAPL', 'MSFT', 'TSLA']);
    const header = screen.getByTestId('sort-unrealizedPnl');
    const th = header.closest('th')!;
    expect(th.getAttribute('aria-sort')).toBe('none');
    fireEvent.click(header);
    expect(th.getAttribute('aria-sort')).toBe('ascending');
    expect(symbols()).toEqual(['MSFT', 'AAPL', 'TSLA']);
    fireEvent.click(header);
    expect(th.getAttribute('aria-sort')).toBe('descending');
    expect(symbols()).toEqual(['TSLA', 'AAPL', 'MSFT']);
    expect(screen.getByTestId('sort-symbol').closest('th')!.getAttribute('aria-sort')).toBe('none');
  });

  it('has a totals row and shows realized P&L columns only when the server sends them', () => {
    const { rerender } = render(<PositionsTable positions={positions} loading={false} fetchedAt={null} equity="100000.00" />);
    expect(screen.getByTestId('total-market-value').textContent).toBe('$3,273.20');
    expect(screen.getByTestId('total-unrealized-pnl').textContent).toContain('+$190.95');
    expect(screen.queryByTestId('sort-realizedPnl')).toBeNull();
    rerender(
      <PositionsTable
        positions={[{ ...positions[0]!, realizedPnl: '125.46', realizedPnlToday: '-3.00' }, positions[1]!]}
        loading={false}
        fetchedAt={null}
        equity="100000.00"
      />,
    );
    expect(screen.getByTestId('sort-realizedPnl')).toBeTruthy();
    expect(screen.getByTestId('total-realized-pnl').textContent).toContain('+$125.46');
    // a position without the field shows a dash, not $0.00
    const msft = screen.getByTestId('position-MSFT');
    expect(within(msft).getByTestId('realized-pnl').textContent).toBe('—');
  });

  it("shows the server's day change for positions held overnight, and a dash when it is unknown", () => {
    const overnight = '2020-01-02T15:00:00.000000Z';
    render(
      <PositionsTable
        positions={[
          { ...positions[0]!, openedAt: overnight, lastdayPrice: '185.125', dayPnl: '48.75' },
          { ...positions[1]!, openedAt: overnight, lastdayPrice: null, dayPnl: null },
        ]}
        loading={false}
        fetchedAt={null}
        equity="100000.00"
      />,
    );
    const [first, second] = [positions[0]!.symbol, positions[1]!.symbol];
    expect(within(screen.getByTestId(`position-${first}`)).getByTestId('day-change').textContent).toContain('+$48.75');
    expect(within(screen.getByTestId(`position-${second}`)).getByTestId('day-change').textContent).toBe('—');
    // not every row's day change is known: no total
    expect(screen.getByTestId('total-day-change').textContent).toBe('—');
  });
});

describe('AccountSummary', () => {
  it('shows an unknown day P&L as unknown, never as 0, and realized as a dash when absent', () => {
    render(<AccountSummary account={account({ dayPnl: null, dayPnlPercent: null })} loading={false} />);
    expect(screen.getByTestId('day-pnl').textContent).toBe('Unknown');
    expect(screen.getByTestId('realized-today').textContent).toBe('—');
    expect(screen.getByTestId('unrealized-change').textContent).toBe('—');
  });

  it('splits day P&L into realized today and the unrealized change', () => {
    render(<AccountSummary account={account({ dayPnl: '397.27', dayPnlPercent: '0.40', realizedPnlToday: '125.46' })} loading={false} />);
    expect(screen.getByTestId('day-pnl').textContent).toContain('+$397.27 (+0.40%)');
    expect(screen.getByTestId('realized-today').textContent).toContain('+$125.46');
    expect(screen.getByTestId('unrealized-change').textContent).toContain('+$271.81');
  });
});
