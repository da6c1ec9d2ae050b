import { lchownSync } from 'node:fs';
import { isObject, parseStrictJson } from '../../oci/strict-json.js';
import { OciError } from '../../oci/errors.js';
import { applyLayer } from './apply.js';
import { UnpackError } from './errors.js';
import { openLayer } from './layer-stream.js';
import { ensureMountpoints, sealOf } from './tree.js';

/**
 * The extraction process, run confined (see confined.ts): reads a plan on stdin,
 * applies the layers in order to the root, checks each layer's diffID, and writes
 * one JSON result line on stdout. It trusts nothing in the layers.
 */
interface Plan {
  root: string;
  layers: { path: string; diffId: string }[];
  keepSetuid: boolean;
  maxEntries: number;
  maxLayerBytes: number;
  idMap?: { idBase: number; idSize: number };
  seal?: boolean;
}

async function main(): Promise<void> {
  // Modes come from the layer exactly (setuid/setgid already filtered by the applier).
  process.umask(0);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const plan = parseStrictJson(Buffer.concat(chunks), { maxDepth: 6 }) as Plan;
  if (!isObject(plan) || typeof plan.root !== 'string' || !Array.isArray(plan.layers))
    throw new UnpackError('UNPACK_FAILED', 'bad extraction plan');
  let entries = 0;
  const skipped: string[] = [];
  for (const [i, layer] of plan.layers.entries()) {
    const { tar, counter } = openLayer(layer.path, plan.maxLayerBytes);
    try {
      const r = await applyLayer(plan.root, tar, {
        keepSetuid: plan.keepSetuid,
        maxEntries: plan.maxEntries,
        idMap: plan.idMap,
      });
      entries += r.entries;
      skipped.push(...r.skipped);
    } catch (err) {
      if (err instanceof OciError && err.code === 'SIZE_EXCEEDED')
        throw new UnpackError('TAR_LIMIT', `layer ${i} expands beyond ${plan.maxLayerBytes} bytes`);
      const cause = (err as { cause?: unknown }).cause;
      if (cause instanceof OciError && cause.code === 'SIZE_EXCEEDED')
        throw new UnpackError('TAR_LIMIT', `layer ${i} expands beyond ${plan.maxLayerBytes} bytes`);
      throw err;
    }
    const diffId = counter.digest().text;
    if (diffId !== layer.diffId)
      throw new UnpackError(
        'LAYER_DIFFID_MISMATCH',
        `layer ${i} uncompresses to ${diffId}, the config says ${layer.diffId}`,
      );
  }
  if (plan.idMap) lchownSync(plan.root, plan.idMap.idBase, plan.idMap.idBase);
  ensureMountpoints(plan.root, plan.idMap);
  const seal = plan.seal ? Object.fromEntries(sealOf(plan.root)) : undefined;
  process.stdout.write(`${JSON.stringify({ ok: true, entries, skipped, ...(seal ? { seal } : {}) })}\n`);
}

main().catch((err: unknown) => {
  const code = err instanceof UnpackError ? err.code : 'UNPACK_FAILED';
  process.stdout.write(`${JSON.stringify({ ok: false, code, message: (err as Error).message })}\n`);
  process.exitCode = 1;
});
