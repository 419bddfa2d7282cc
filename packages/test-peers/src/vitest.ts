/**
 * Tests that need peers: where one is missing, the test is skipped with the reason in its title
 * and on stderr; with `CI=true` it fails instead, so CI never passes by skipping.
 */
import { describe, it } from 'vitest';
import {
  type MissingPeer,
  missingPeers,
  PeerMissingError,
  type PeerName,
  peersRequired,
} from './peers';

const warned = new Set<string>();

function why(missing: readonly MissingPeer[]): string {
  return missing.map((m) => `${m.name}: ${m.reason}`).join('; ');
}

function warn(title: string, missing: readonly MissingPeer[]): void {
  const line = `[test-peers] skipping "${title}": ${why(missing)}`;
  if (warned.has(line)) return;
  warned.add(line);
  process.stderr.write(`${line}\n`);
}

/**
 * `describe(title, body)` when every peer in `names` is there. Otherwise outside CI a skipped
 * suite whose title says what is missing; in CI a suite with one failing test saying the same.
 */
export function describeWithPeers(
  names: readonly PeerName[],
  title: string,
  body: () => void,
): void {
  const missing = missingPeers(names);
  if (missing.length === 0) {
    describe(title, body);
  } else if (peersRequired()) {
    describe(title, () => {
      it('has its peers', () => {
        throw new PeerMissingError(missing);
      });
    });
  } else {
    warn(title, missing);
    describe.skip(`${title} (skipped: ${why(missing)})`, body);
  }
}

/** `it(title, fn, timeoutMs)` with the same rule for missing peers as `describeWithPeers`. */
export function itWithPeers(
  names: readonly PeerName[],
  title: string,
  fn: () => Promise<void> | void,
  timeoutMs?: number,
): void {
  const missing = missingPeers(names);
  if (missing.length === 0) {
    it(title, fn, timeoutMs);
  } else if (peersRequired()) {
    it(title, () => {
      throw new PeerMissingError(missing);
    });
  } else {
    warn(title, missing);
    it.skip(`${title} (skipped: ${why(missing)})`, fn);
  }
}
