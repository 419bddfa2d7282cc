// `pnpm fuzz [cases] [seed] [--offload | --in-thread]`: runs the hostile-frontend fuzzer against
// a vhost_mdev backend serving mvnet-loopback (default 20000 cases) in chunks, printing one JSON
// line per chunk and exiting 1 with the replay seed and case on a failure. Without a flag both
// datapaths run: `cases` in-thread, then a tenth as many with the worker datapath (slower).
import { fuzzFrontend } from '../src/fuzz';

const argv = process.argv.slice(2).filter((a) => a !== '--');
const modes = argv.includes('--offload')
  ? [true]
  : argv.includes('--in-thread')
    ? [false]
    : [false, true];
const args = argv.filter((a) => !a.startsWith('--'));
const cases = Number(args[0] ?? process.env.FUZZ_CASES ?? 20_000);
const seed = Number(args[1] ?? process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
if (!Number.isInteger(cases) || cases <= 0 || !Number.isInteger(seed)) {
  console.error('usage: pnpm fuzz [cases] [seed] [--offload | --in-thread]');
  process.exit(2);
}

const CHUNK = 2_000;

async function run(offload: boolean, cases: number): Promise<void> {
  const name = `vhost-mdev fuzz (${offload ? 'worker' : 'in-thread'} datapath)`;
  const flag = offload ? ' --offload' : ' --in-thread';
  const started = performance.now();
  let done = 0;
  let frames = 0;
  const outcomes: Record<string, number> = {};
  // Each chunk uses its own seed so a failure replays with `pnpm fuzz <cases> <seed>`.
  for (let chunk = 0; done < cases; chunk++) {
    const n = Math.min(CHUNK, cases - done);
    const chunkSeed = seed + chunk;
    const stats = await fuzzFrontend(n, chunkSeed, { offload });
    done += stats.cases;
    frames += stats.frames;
    for (const [k, v] of Object.entries(stats.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
    if (stats.failure) {
      console.log(
        JSON.stringify({
          name,
          ok: false,
          ...stats.failure,
          replay: `pnpm fuzz ${stats.failure.caseIndex + 1} ${chunkSeed}${flag}`,
        }),
      );
      process.exit(1);
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(
      JSON.stringify({ name, ok: true, seed: chunkSeed, cases: done, outcomes, frames, seconds }),
    );
  }
}

for (const offload of modes) {
  await run(offload, offload && modes.length > 1 ? Math.max(1, Math.ceil(cases / 10)) : cases);
}
