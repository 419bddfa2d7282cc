export { siblingModule, spawnWorker } from './spawn-worker';
