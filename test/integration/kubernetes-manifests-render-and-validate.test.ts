import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../gateway/config.js';
import { compilePolicy } from '../../policies/loader.js';
import { run } from '../helpers/peers.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * deploy/kubernetes: both overlays render with the real kustomize (Debian 13's), every
 * object validates against the Kubernetes schemas (kubernetes-models), and what the
 * objects say fits together: selectors match the pods, every volume names an object
 * that is rendered, the config in the ConfigMap loads as a gateway config whose secret
 * files are keys of the mounted Secret, the policy compiles, readiness is /readyz and
 * liveness /healthz, and the fleet runs three replicas on PostgreSQL and S3.
 */
const DEPLOY = fileURLToPath(new URL('../../../deploy/kubernetes', import.meta.url));

type Obj = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: unknown };
const MODELS: Record<string, (o: Obj) => { validate(): void }> = {
  'apps/v1/Deployment': (o) => new Deployment(o as never),
  'networking.k8s.io/v1/NetworkPolicy': (o) => new NetworkPolicy(o as never),
  'policy/v1/PodDisruptionBudget': (o) => new PodDisruptionBudget(o as never),
  'v1/ConfigMap': (o) => new ConfigMap(o as never),
  'v1/PersistentVolumeClaim': (o) => new PersistentVolumeClaim(o as never),
  'v1/Secret': (o) => new Secret(o as never),
  'v1/Service': (o) => new Service(o as never),
  'v1/ServiceAccount': (o) => new ServiceAccount(o as never),
};

describe('Kubernetes manifests', () => {
  const work = tempDir('portcullis-k8s-');
  after(() => work.cleanup());

  const render = async (overlay: 'embedded' | 'fleet'): Promise<Obj[]> => {
    const dir = join(work.path, overlay);
    cpSync(DEPLOY, dir, { recursive: true });
    const secrets = join(dir, 'overlays', overlay, 'secrets');
    writeFileSync(
      join(secrets, 'gateway.key'),
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    writeFileSync(join(secrets, 'pg-password'), 'pg-secret\n');
    writeFileSync(join(secrets, 's3-secret'), 's3-secret\n');
    const out = await run('kustomize', ['build', join(dir, 'overlays', overlay)]);
    const objects = parseAllDocuments(out.stdout).map((d) => d.toJS() as Obj);
    // kustomize folds long base64 values over lines, which the API server's decoder skips
    // (Go's base64 ignores line breaks); the schema's "byte" format does not.
    for (const o of objects)
      if (o.kind === 'Secret' && o.data && typeof o.data === 'object')
        for (const [k, v] of Object.entries(o.data as Record<string, string>))
          (o.data as Record<string, string>)[k] = v.replace(/\n/g, '');
    return objects;
  };

  for (const [overlay, replicas] of [
    ['embedded', 1],
    ['fleet', 3],
  ] as const) {
    test(`${overlay}: renders, validates, and fits together`, async () => {
      const objects = await render(overlay);
      for (const o of objects) {
        const model = MODELS[`${o.apiVersion}/${o.kind}`];
        assert.ok(model, `an object of a kind this test knows: ${o.apiVersion} ${o.kind}`);
        model(o).validate();
      }
      const one = (kind: string) => {
        const found = objects.filter((o) => o.kind === kind);
        assert.equal(found.length, 1, kind);
        return found[0] as Obj;
      };
      const deployment = new Deployment(one('Deployment') as never);
      const pod = deployment.spec?.template;
      const podLabels = pod?.metadata?.labels ?? {};
      const matches = (sel: Record<string, string> | undefined) =>
        sel !== undefined && Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => podLabels[k] === v);
      assert.equal(deployment.spec?.replicas, replicas);
      assert.ok(matches(deployment.spec?.selector.matchLabels));
      assert.ok(matches(new Service(one('Service') as never).spec?.selector));
      const pdb = new PodDisruptionBudget(one('PodDisruptionBudget') as never);
      assert.ok(matches(pdb.spec?.selector?.matchLabels));
      if (overlay === 'fleet') assert.equal(pdb.spec?.minAvailable, 2);
      else assert.equal(pdb.spec?.maxUnavailable, 1);
      const np = new NetworkPolicy(one('NetworkPolicy') as never);
      assert.ok(matches(np.spec?.podSelector.matchLabels));
      assert.deepEqual(np.spec?.policyTypes, ['Ingress', 'Egress']);
      const blocks = (np.spec?.egress ?? []).flatMap((e) =>
        (e.to ?? []).flatMap((t) => (t.ipBlock ? [t.ipBlock] : [])),
      );
      for (const b of blocks) assert.ok(b.except?.includes('169.254.0.0/16'), 'no path to the metadata endpoint');

      const spec = pod?.spec;
      const container = spec?.containers[0];
      assert.equal(spec?.securityContext?.runAsNonRoot, true);
      assert.equal(container?.securityContext?.readOnlyRootFilesystem, true);
      assert.equal(container?.securityContext?.allowPrivilegeEscalation, false);
      assert.deepEqual(container?.securityContext?.capabilities?.drop, ['ALL']);
      assert.equal(container?.readinessProbe?.httpGet?.path, '/readyz');
      assert.equal(container?.livenessProbe?.httpGet?.path, '/healthz');
      assert.deepEqual(container?.args, ['serve', '--config', '/etc/portcullis/portcullis.yaml']);

      // Every volume names a rendered object; the config and secrets are where the config says.
      const named = (kind: string, name: string | undefined) =>
        objects.find((o) => o.kind === kind && o.metadata.name === name);
      const mounts = new Map((container?.volumeMounts ?? []).map((m) => [m.name, m.mountPath]));
      let configMap: ConfigMap | undefined;
      let secret: Secret | undefined;
      for (const v of spec?.volumes ?? []) {
        if (v.configMap) configMap = new ConfigMap(named('ConfigMap', v.configMap.name) as never);
        if (v.secret) secret = new Secret(named('Secret', v.secret.secretName) as never);
        if (v.persistentVolumeClaim) assert.ok(named('PersistentVolumeClaim', v.persistentVolumeClaim.claimName));
        assert.ok(mounts.has(v.name), `volume ${v.name} is mounted`);
      }
      assert.ok(configMap?.metadata?.name && secret?.metadata?.name, 'the config map and the secret are rendered');
      assert.equal(mounts.get('config'), '/etc/portcullis');
      const secretDir = mounts.get('secrets') as string;
      const config = parseConfig('/etc/portcullis/portcullis.yaml', configMap?.data?.['portcullis.yaml'] ?? '');
      assert.equal(config.dataDir, mounts.get('data'));
      const secretFiles = [
        config.attestationKey,
        config.metadata?.driver === 'postgres' ? config.metadata.password?.file : undefined,
        config.store?.driver === 's3' ? config.store.secretAccessKey.file : undefined,
      ].filter((f): f is string => f !== undefined);
      for (const f of secretFiles) {
        assert.ok(f.startsWith(`${secretDir}/`), `${f} is in the mounted secret`);
        assert.ok(Object.hasOwn(secret?.data ?? {}, f.slice(secretDir.length + 1)), `${f} is a key of the secret`);
      }
      if (overlay === 'fleet') {
        assert.equal(config.metadata?.driver, 'postgres');
        assert.equal(config.store?.driver, 's3');
        assert.equal(secretFiles.length, 3);
      } else {
        assert.equal(config.metadata, undefined);
        assert.equal(config.store, undefined);
        assert.equal((deployment.spec?.strategy as { type?: string } | undefined)?.type, 'Recreate');
        assert.equal(mounts.get('data'), '/var/lib/portcullis');
      }
      await compilePolicy('policy.yaml', configMap?.data?.['policy.yaml'] ?? '', () => {
        throw new Error('the starter policy names no key files');
      });
    });
  }
});
