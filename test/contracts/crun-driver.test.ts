import { ociRuntime } from '../../runner/runtime/oci-runtime.js';
import { runtimeDriverContract } from './runtime-driver.contract.js';

runtimeDriverContract('crun', () => ociRuntime('crun'));
