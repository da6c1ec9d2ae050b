import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfigFile, type GatewayConfig, type UpstreamConfig } from '../gateway/config.js';
import type { MetadataStore } from '../gateway/metadata/metadata-store.js';
import { openMetadataStore } from '../gateway/metadata/open-metadata-store.js';
import { SqliteMetadataStore } from '../gateway/metadata/sqlite-metadata-store.js';
import type { DecisionRecord } from '../gateway/metadata/metadata-store.js';
import { gatherFormats } from '../gateway/pipeline/evidence.js';
import { gatherGpgEvidence } from '../gateway/pipeline/gpg-evidence.js';
import { loadRegistriesD } from '../gateway/registries-d.js';
import { openUpstream, type Upstream } from '../gateway/upstreams.js';
import { digestOf, parseDigest, type Digest } from '../oci/digest.js';
import { MAX_MANIFEST_BYTES, parseManifest } from '../oci/manifest.js';
import { MANIFEST_MEDIA_TYPES, MediaType } from '../oci/media-types.js';
import { formatImageReference, parseImageReference } from '../oci/reference.js';
import { header } from '../oci/registry-client/client.js';
import { isObject, parseStrictJson } from '../oci/strict-json.js';
import { formatDiagnostic } from '../policies/diagnostics.js';
import { parseRef } from '../policies/gpg-identity.js';
import { LoadError } from '../policies/errors.js';
import { evaluate, formatsFor, nameRefusal, tagRefusal } from '../policies/evaluator.js';
import { loadPolicyFile, rejectEverythingPolicy } from '../policies/loader.js';
import type { CompiledPolicy, CosignSignatureEvidence, Decision, Evidence, Subject } from '../policies/model.js';

/**
 * `portcullis policy test` and `portcullis policy explain`: a policy's decision for
 * images, made live against their registries (or an OCI layout) without serving
 * anything; and why the running gateway admitted or denied something, from its
 * decision log.
 */
type Print = (line: string) => void;

const LIMITS = { maxSignatures: 16, maxSignatureBytes: 64 * 1024 };
const TIMEOUTS = { headersMs: 30_000, idleMs: 30_000, totalMs: 60_000, minBytesPerSecond: 1024 };

export interface TestOptions {
  readonly policy: string;
  readonly config?: string | undefined;
  readonly plainHttp?: boolean | undefined;
  readonly lookaside?: string | undefined;
  readonly layout?: string | undefined;
  readonly json?: boolean | undefined;
}

interface TestResult {
  readonly image: string;
  readonly digest?: string;
  readonly decision?: Decision;
  readonly error?: string;
}

/** Exit code: 0 when every image is admitted, 1 when one is denied, 2 when one could not be evaluated. */
export async function policyTest(images: readonly string[], opts: TestOptions, print: Print): Promise<number> {
  let policy: CompiledPolicy;
  try {
    policy = await loadPolicyFile(opts.policy);
  } catch (err) {
    // A policy that does not load is an error of the run (2), not a denial (1).
    if (!(err instanceof LoadError)) throw err;
    for (const d of err.diagnostics) print(formatDiagnostic(d));
    return 2;
  }
  const config = opts.config ? loadConfigFile(opts.config) : undefined;
  const results: TestResult[] = [];
  for (const image of images) {
    try {
      results.push(
        opts.layout
          ? await testFromLayout(policy, image, opts.layout, opts)
          : await testFromRegistry(policy, image, config, opts),
      );
    } catch (err) {
      results.push({ image, error: (err as Error).message });
    }
  }
  if (opts.json)
    print(JSON.stringify(results.map((r) => ({ ...r, decision: r.decision ? { ...r.decision } : undefined }))));
  else for (const r of results) printResult(r, print);
  if (results.some((r) => r.error !== undefined)) return 2;
  return results.every((r) => r.decision?.allowed) ? 0 : 1;
}

function printResult(r: TestResult, print: Print): void {
  if (r.error !== undefined || !r.decision) {
    print(`${r.image}: ERROR ${r.error ?? 'no decision'}`);
    return;
  }
  const d = r.decision;
  const verdict = d.allowed
    ? d.verdict
      ? 'ADMITTED'
      : `ADMITTED (${d.mode} mode; enforcing would deny: ${d.denial ?? ''})`
    : `DENIED (${d.denial ?? ''})`;
  print(`${r.image}@${r.digest ?? ''}: ${verdict}`);
  print(`  rule: ${d.rule}   policy: ${d.policyDigest}`);
  for (const reason of d.reasons)
    print(`  - ${reason.code}: ${reason.message}${reason.evidence ? ` [${reason.evidence}]` : ''}`);
}

function upstreamFor(host: string, config: GatewayConfig | undefined, opts: TestOptions): Upstream {
  const configured = config?.upstreams.find((u) => u.name === host);
  const cfg: UpstreamConfig = configured ?? {
    name: host,
    url: `${opts.plainHttp ? 'http' : 'https'}://${host === 'docker.io' ? 'registry-1.docker.io' : host}`,
    prefix: 'test',
    dockerHubMirror: false,
    username: undefined,
    password: undefined,
    authRealms: undefined,
    redirectOrigins: undefined,
    timeouts: TIMEOUTS,
    lookaside: opts.lookaside,
  };
  const withLookaside = opts.lookaside !== undefined ? { ...cfg, lookaside: opts.lookaside } : cfg;
  return openUpstream(
    withLookaside,
    process.env,
    config?.registriesD ? loadRegistriesD(config.registriesD) : undefined,
  );
}

async function testFromRegistry(
  policy: CompiledPolicy,
  image: string,
  config: GatewayConfig | undefined,
  opts: TestOptions,
): Promise<TestResult> {
  const ref = parseImageReference(image);
  const name = `${ref.host}/${ref.repository}`;
  const upstream = upstreamFor(ref.host, config, opts);
  try {
    const reference = ref.digest?.text ?? ref.tag ?? 'latest';
    const res = await upstream.client.manifest(
      ref.repository,
      reference,
      'GET',
      MANIFEST_MEDIA_TYPES.join(', '),
      MAX_MANIFEST_BYTES,
    );
    if (!res) throw new Error(`${formatImageReference(ref)} is not known to ${upstream.config.url}`);
    const digest = digestOf(res.bytes);
    if (ref.digest && ref.digest.hex !== digest.hex)
      throw new Error(`the registry sent a manifest hashing to ${digest.text}`);
    const manifest = parseManifest(res.bytes, header(res.headers, 'content-type'));
    const tag = ref.digest ? undefined : ref.tag;
    const evidence = await gatherFormats(
      upstream,
      ref.repository,
      digest,
      LIMITS,
      formatsFor(policy, { name, digest, tag }),
      res.bytes,
    );
    const decision = await decideAsGateway(policy, { name, digest, tag, kind: manifest.kind }, evidence);
    return { image, digest: digest.text, decision };
  } finally {
    await upstream.client.close();
  }
}

/**
 * What the gateway would decide for this one manifest: its refusal of pulls by tag
 * under `tags: require-digest` included. (Whether an admitted index covers a platform
 * manifest depends on what the gateway admitted before; it is not considered here.)
 */
async function decideAsGateway(policy: CompiledPolicy, subject: Subject, evidence: Evidence): Promise<Decision> {
  return tagRefusal(policy, subject) ?? evaluate(policy, subject, evidence);
}

/**
 * An image in an OCI layout directory (`oci:DIR:TAG` as skopeo writes it; cosign
 * signatures as the layout's `sha256-<hex>.sig` entry). IMAGE names it as clients
 * would (`registry/repo:TAG`), for the scope and the identity rules; TAG selects
 * the layout entry.
 */
async function testFromLayout(
  policy: CompiledPolicy,
  image: string,
  layout: string,
  opts: TestOptions,
): Promise<TestResult> {
  const ref = parseImageReference(image);
  const name = `${ref.host}/${ref.repository}`;
  const index = parseStrictJson(readFileSync(join(layout, 'index.json')), { maxDepth: 16 });
  const entries = isObject(index) && Array.isArray(index.manifests) ? index.manifests.filter(isObject) : [];
  const refName = (e: Record<string, unknown>) =>
    isObject(e.annotations) ? e.annotations['org.opencontainers.image.ref.name'] : undefined;
  const entry = ref.digest
    ? entries.find((e) => e.digest === ref.digest?.text)
    : entries.find((e) => refName(e) === ref.tag);
  if (!entry || typeof entry.digest !== 'string')
    throw new Error(`no entry ${ref.digest?.text ?? ref.tag ?? ''} in ${layout}/index.json`);
  const digest = parseDigest(entry.digest);
  const blob = (d: Digest) => {
    const bytes = readFileSync(join(layout, 'blobs', d.algorithm, d.hex));
    if (digestOf(bytes, d.algorithm).hex !== d.hex)
      throw new Error(`blob ${d.text} in the layout does not match its digest`);
    return bytes;
  };
  const manifest = parseManifest(blob(digest), typeof entry.mediaType === 'string' ? entry.mediaType : undefined);
  const cosign: CosignSignatureEvidence[] = [];
  const sigEntry = entries.find((e) => refName(e) === `${digest.algorithm}-${digest.hex}.sig`);
  if (sigEntry && typeof sigEntry.digest === 'string') {
    const sig = parseManifest(blob(parseDigest(sigEntry.digest)), MediaType.ociManifest);
    if (sig.kind === 'image') {
      for (const [i, layer] of sig.layers
        .filter((l) => l.mediaType === MediaType.cosignSimpleSigning)
        .slice(0, LIMITS.maxSignatures)
        .entries()) {
        cosign.push({
          source: `layout ${digest.algorithm}-${digest.hex}.sig layer ${i}`,
          payload: blob(layer.digest),
          signature: layer.annotations?.['dev.cosignproject.cosign/signature'] ?? '',
        });
      }
    }
  }
  const tag = ref.digest ? undefined : ref.tag;
  let gpg;
  if (opts.lookaside !== undefined && formatsFor(policy, { name, digest, tag }).has('gpg')) {
    const upstream = upstreamFor(ref.host, undefined, opts);
    try {
      gpg = await gatherGpgEvidence(upstream, ref.repository, digest, LIMITS);
    } finally {
      await upstream.client.close();
    }
  }
  const decision = await decideAsGateway(
    policy,
    { name, digest, tag, kind: manifest.kind },
    { cosign, gpg: gpg?.gpg, problems: gpg?.problems ?? [] },
  );
  return { image, digest: digest.text, decision };
}

/**
 * Why the gateway admitted or denied DIGEST or REFERENCE: its decisions, newest
 * first, from the metadata store of the gateway the config names. Exit code 0 when
 * there is a decision, 1 when there is none.
 */
/** The gateway's metadata store, which must exist already (these commands read a running gateway's data). */
export async function openGatewayStore(configPath: string): Promise<MetadataStore> {
  const config = loadConfigFile(configPath);
  if (config.metadata?.driver === 'postgres') return openMetadataStore(config, process.env, { readOnlyTool: true });
  const path = join(config.dataDir, 'metadata.db');
  if (!existsSync(path))
    throw new Error(
      `no gateway data at ${config.dataDir} (${path} does not exist): has the gateway of ${configPath} run yet?`,
    );
  return new SqliteMetadataStore(path);
}

/** A repository as the gateway names it: registry/path, normalized (docker.io/alpine is docker.io/library/alpine). */
function repositoryName(text: string): { name: string; tag: string | undefined } {
  const ref = parseRef(text);
  if (!ref) throw new Error(`${JSON.stringify(text)} is not an image reference`);
  return { name: ref.name, tag: ref.tag };
}

export async function policyExplain(
  what: string,
  opts: { config: string; json?: boolean | undefined; limit?: number | undefined },
  print: Print,
): Promise<number> {
  const config = loadConfigFile(opts.config);
  const store = await openGatewayStore(opts.config);
  const policy = config.policy
    ? await loadPolicyFile(config.policy).then(
        (p) => p,
        () => undefined,
      )
    : await rejectEverythingPolicy();
  const currentDigest = policy?.digest.text;
  try {
    let records: DecisionRecord[];
    let subject = what;
    if (/^[a-z0-9]+:[a-f0-9]{32,}$/.test(what)) {
      records = await store.decisions({ digest: parseDigest(what).text, limit: opts.limit ?? 20 });
    } else {
      const ref = parseImageReference(what);
      const name = `${ref.host}/${ref.repository}`;
      let digest = ref.digest?.text;
      const limit = opts.limit ?? 20;
      if (!digest && ref.tag !== undefined) {
        // Decisions made for this tag (denials included), and those for the digest it resolves to now.
        const pin = await store.pin(name, ref.tag);
        digest = pin?.digest ?? (await store.tag(name, ref.tag))?.digest;
        subject = `${name}:${ref.tag}${digest ? ` (${pin ? 'pinned to' : 'last resolved to'} ${digest})` : ''}`;
        const byTag = await store.decisions({ repository: name, tag: ref.tag, limit });
        const byDigest = digest ? await store.decisions({ digest, repository: name, limit }) : [];
        const seen = new Set<string>();
        records = [...byTag, ...byDigest]
          .sort((a, b) => b.time - a.time)
          .filter((r) => {
            const key = JSON.stringify(r);
            if (seen.has(key)) return false;
            seen.add(key);
            return true;
          })
          .slice(0, limit);
      } else {
        records = digest ? await store.decisions({ digest, repository: name, limit }) : [];
      }
      if (records.length === 0 && policy) {
        // Refused before anything was fetched (and so not recorded): say so from the policy in force.
        const refusal = nameRefusal(policy, {
          name,
          ...(ref.tag !== undefined && !ref.digest ? { tag: ref.tag } : {}),
          ...(ref.digest ? { digest: ref.digest } : {}),
        });
        if (refusal) {
          const why = refusal.reasons[0];
          if (opts.json)
            print(
              JSON.stringify({ refusedByName: { rule: refusal.rule, reason: refusal.denial, message: why?.message } }),
            );
          else
            print(
              `${subject}: no decision recorded; the policy file now refuses it by name, before fetching anything: rule ${refusal.rule}: ${refusal.denial}: ${why?.message ?? ''}`,
            );
          return 0;
        }
      }
    }
    if (opts.json) print(JSON.stringify(records));
    else if (records.length === 0) print(`${subject}: no decision recorded by the gateway at ${config.dataDir}`);
    else {
      print(
        `${subject}: ${records.length} decision(s), newest first (the policy file now: ${currentDigest ?? 'does not load'})`,
      );
      for (const r of records) {
        const what2 = r.allowed
          ? r.verdict === false
            ? `ADMITTED in ${r.mode ?? 'enforce'} mode (enforcing would deny)`
            : 'ADMITTED'
          : 'DENIED';
        print(`${new Date(r.time).toISOString()}  ${what2}  ${r.repository}${r.tag ? `:${r.tag}` : ''}@${r.digest}`);
        print(`  rule: ${r.rule}   policy: ${r.policyDigest}`);
        for (const reason of r.reasons) print(`  - ${reason.code}: ${reason.message}`);
      }
    }
    return records.length > 0 ? 0 : 1;
  } finally {
    await store.close();
  }
}

/** `portcullis tags list|release`: tags held by `tags: pin` rules. */
export async function tagsCommand(
  action: 'list' | 'release',
  config: string,
  target: string | undefined,
  print: Print,
): Promise<number> {
  const store = await openGatewayStore(config);
  try {
    if (action === 'list') {
      const pins = await store.pins(target === undefined ? undefined : repositoryName(target).name);
      for (const p of pins)
        print(
          `${p.repository}:${p.tag}  ${p.digest}  pinned ${new Date(p.pinnedAt).toISOString()}${p.upstreamDigest ? `  (upstream now ${p.upstreamDigest})` : ''}`,
        );
      return 0;
    }
    const ref = target === undefined ? undefined : repositoryName(target);
    if (!ref?.tag) throw new Error(`tags release needs REGISTRY/REPOSITORY:TAG, not ${JSON.stringify(target ?? '')}`);
    const released = await store.releasePin(ref.name, ref.tag);
    print(
      released
        ? `released ${target}: its next pull verifies and pins what the upstream tag points at then`
        : `${target} is not pinned`,
    );
    return released ? 0 : 1;
  } finally {
    await store.close();
  }
}
