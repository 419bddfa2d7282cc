export { commands, main } from './cli';
export type { Command, CommandIo } from './io';
