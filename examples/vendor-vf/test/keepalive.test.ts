// The VF's interrupts arrive through Atomics.waitAsync, which does not keep Node's event loop
// alive: while a queue is enabled the driver has the VF's thread hold the process, so a program
// whose only pending work is frames in flight waits for them, and exits once the VF is gone.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const cliDir = dirname(createRequire(import.meta.url).resolve('@mdev/cli/package.json'));
const program = join(cliDir, 'src/testing/await-echo.ts');
const register = fileURLToPath(new URL('./register-pktgen.ts', import.meta.url));

describe('vendor_vf and the process lifetime', () => {
  it('keeps a program alive while frames are in flight, and lets it exit after teardown', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', '--import', register, program, 'vendor-vf'],
      { cwd: fileURLToPath(new URL('..', import.meta.url)), timeout: 60_000 },
    );
    expect(JSON.parse(stdout.trim())).toEqual({ sent: 20_000, received: 20_000, intact: 20_000 });
  }, 90_000);
});
