/**
 * `store-crash.ts DIR UUID`: writes a definition under DIR, then dies (SIGKILL, as a host killed
 * by the OOM killer or `kill -9`) in the middle of writing a new version of it: the first write
 * of the new content puts half its bytes on disk, and the process is killed. Tests read what the
 * store left behind.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { DefinitionStore } from '../host/store';

const [dir, uuid] = process.argv.slice(2);
const store = new DefinitionStore(dir!);
const def = { uuid: uuid!, parent: 'mtty', type: 'mtty-1', auto: false, attrs: [] };
store.write({ ...def, attrs: [['version', 'old']] });

const die = (): never => {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
};
const half = (data: string | ArrayBufferView) => {
  const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer);
  return bytes.subarray(0, bytes.length >> 1);
};
const { writeSync, writeFileSync } = fs;
fs.writeSync = ((fd: number, data: string | ArrayBufferView) => {
  writeSync(fd, half(data));
  die();
}) as typeof fs.writeSync;
fs.writeFileSync = ((path: fs.PathOrFileDescriptor, data: string | ArrayBufferView) => {
  writeFileSync(path, half(data));
  die();
}) as typeof fs.writeFileSync;
// The store imports these by name: make its bindings the ones above.
syncBuiltinESMExports();
store.write({ ...def, attrs: [['version', 'new'.repeat(1000)]] });
