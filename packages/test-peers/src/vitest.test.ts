import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';

const config = join(import.meta.dirname, 'fixtures', 'vitest.config.ts');

/** Runs the fixture in a vitest of its own; resolves with its exit code and output. */
function runFixture(ci: string | undefined): Promise<{ code: number | null; out: string }> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MDEV_TESTPMD: '/nonexistent/dpdk-testpmd',
    NO_COLOR: '1',
  };
  delete env.CI;
  if (ci !== undefined) env.CI = ci;
  delete env.VITEST;
  delete env.VITEST_WORKER_ID;
  delete env.VITEST_POOL_ID;
  const vitest = join(
    dirname(createRequire(import.meta.url).resolve('vitest/package.json')),
    'vitest.mjs',
  );
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [vitest, 'run', '--config', config, '--reporter=verbose'],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

// Two vitest runs side by side: each spends most of its time starting up.
describe.concurrent('describeWithPeers and itWithPeers', () => {
  it('outside CI a missing peer skips the tests and says why', async () => {
    const { code, out } = await runFixture(undefined);
    expect(code, out).toBe(0);
    expect(out).toMatch(/skipping "a suite needing testpmd": testpmd: MDEV_TESTPMD=\/nonexistent/);
    expect(out).toMatch(/skipping "a test needing testpmd"/);
    expect(out).toMatch(/2 skipped/);
    expect(out).toMatch(/1 passed/);
  }, 60_000);

  it('with CI=true a missing peer fails the tests instead', async () => {
    const { code, out } = await runFixture('true');
    expect(code, out).toBe(1);
    expect(out).toMatch(
      /PeerMissingError: testpmd: MDEV_TESTPMD=\/nonexistent\/dpdk-testpmd is not/,
    );
    expect(out).toMatch(/2 failed/);
    expect(out).toMatch(/1 passed/);
  }, 60_000);
});
