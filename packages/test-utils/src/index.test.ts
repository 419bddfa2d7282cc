import { describe, expect, it } from 'vitest';
import { nextTurn, nextTurns, sleep, until, untilTurns } from './index';

describe('test-utils', () => {
  it('nextTurn resolves after what is queued; nextTurns gives a turn each', async () => {
    const order: string[] = [];
    setImmediate(() => order.push('queued'));
    await nextTurn();
    order.push('turn');
    expect(order).toEqual(['queued', 'turn']);
    // A callback that queues itself again runs once a turn: three turns, three runs.
    let runs = 0;
    const again = () => {
      runs++;
      if (runs < 10) setImmediate(again);
    };
    setImmediate(again);
    await nextTurns(3);
    expect(runs).toBe(3);
  });

  it('until resolves true once the condition holds, false when it never does', async () => {
    let n = 0;
    setTimeout(() => n++, 5);
    expect(await until(() => n === 1)).toBe(true);
    expect(await until(() => n === 2, 10)).toBe(false);
    await sleep(1);
    expect(n).toBe(1);
  });

  it('untilTurns is true when the condition comes in time, false after the bound', async () => {
    let turns = 0;
    const tick = () => {
      turns++;
      if (turns < 100) setImmediate(tick);
    };
    setImmediate(tick);
    expect(await untilTurns(() => turns >= 10)).toBe(true);
    expect(await untilTurns(() => turns >= 1000, 20)).toBe(false);
  });
});
