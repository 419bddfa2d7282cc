import { PassThrough } from 'node:stream';
import type { CommandIo } from '../io';

/** Streams for a command under test, and the text written to them so far (tests only). */
export function capture(): { io: CommandIo; text: { out: string; err: string } } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const text = { out: '', err: '' };
  stdout.on('data', (b) => (text.out += b));
  stderr.on('data', (b) => (text.err += b));
  return { io: { stdout, stderr }, text };
}
