import { bwrapRuntime } from '../../runner/runtime/bwrap.js';
import { runtimeDriverContract } from './runtime-driver.contract.js';

runtimeDriverContract('bwrap', () => bwrapRuntime(), { mapsEveryId: false });
