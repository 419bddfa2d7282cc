import { describe, expect, it } from 'vitest';
import { fuzzFrontend } from './fuzz';

describe('hostile vhost-user frontend (short runs; `pnpm fuzz` runs long ones)', () => {
  it('in-thread datapath: no crash, leak, stray write or unanswered hostile message', async () => {
    const stats = await fuzzFrontend(300, 7);
    console.log(JSON.stringify(stats));
    expect(stats.failure).toBeNull();
  });
});
