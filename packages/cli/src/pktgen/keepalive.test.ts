import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const program = fileURLToPath(new URL('../testing/await-echo.ts', import.meta.url));
const cwd = fileURLToPath(new URL('../..', import.meta.url));

describe('worker datapath and the process lifetime', () => {
  // Atomics.waitAsync, on which the device's interrupts arrive, does not keep Node's event loop
  // alive. A program whose only pending work was frames in flight used to end before they came
  // back (Node stops a program whose top-level await can no longer settle, with status 13).
  it('keeps a program alive while frames are in flight, and lets it exit after teardown', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', program],
      { cwd, timeout: 60_000 },
    );
    expect(JSON.parse(stdout.trim())).toEqual({
      sent: 20_000,
      received: 20_000,
      intact: 20_000,
    });
  }, 90_000);
});
