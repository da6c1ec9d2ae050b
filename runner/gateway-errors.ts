import { UpstreamError } from '../oci/errors.js';
import { causeText } from '../oci/registry-client/client.js';
import { RunnerError } from './errors.js';

/**
 * What the gateway said, in the gateway's words: a refusal keeps its reason code
 * and message (`the gateway denied …: … [IMAGE_DENIED signature.missing]`), a
 * gateway that cannot be reached says so with the cause. The registry client sees
 * the gateway as an "upstream"; secure-run users see a gateway.
 */
export function fromGateway(err: unknown, what: string, gateway: string): unknown {
  if (!(err instanceof UpstreamError)) return err;
  const remote = err.remote;
  const reason = typeof remote?.detail?.reason === 'string' ? remote.detail.reason : undefined;
  const said = remote ? remote.message || remote.code : undefined;
  if (err.code === 'UPSTREAM_DENIED') {
    return new RunnerError('IMAGE_DENIED', `the gateway denied ${what}: ${said ?? 'no reason given'}`, {
      cause: err,
      reason,
    });
  }
  if (err.status === undefined && (err.code === 'UPSTREAM_UNAVAILABLE' || err.code === 'UPSTREAM_TIMEOUT')) {
    const why =
      err.code === 'UPSTREAM_TIMEOUT' ? 'did not answer in time' : `could not be reached (${causeText(err.cause)})`;
    return new RunnerError('GATEWAY_UNREACHABLE', `the gateway at ${gateway} ${why} for ${what}`, { cause: err });
  }
  if (said !== undefined) {
    return new RunnerError(
      'IMAGE_UNAVAILABLE',
      `the gateway answered ${what} with ${err.status ?? 'an error'}: ${said}`,
      {
        cause: err,
        reason,
      },
    );
  }
  return new RunnerError('IMAGE_UNAVAILABLE', `the gateway did not serve ${what}: ${err.message}`, { cause: err });
}
