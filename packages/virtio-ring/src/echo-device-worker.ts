// Worker entry: runs runEchoDevice() on workerData and posts its result.
import { parentPort, workerData } from 'node:worker_threads';
import { type EchoDeviceParams, runEchoDevice } from './echo-device';

parentPort?.postMessage(runEchoDevice(workerData as EchoDeviceParams));
