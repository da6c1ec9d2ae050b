import { loadConfigFile } from '../gateway/config.js';
import { openBlobStore } from '../gateway/store/open-blob-store.js';
import { fsck, type FsckFinding } from '../gateway/store/fsck.js';
import { openGatewayStore } from './policy-tools.js';

type Print = (line: string) => void;

/**
 * `portcullis fsck --config FILE [--repair] [--json]`: checks the store of the gateway
 * the config names. Exit 0 when nothing is wrong, 1 when something was found (repaired
 * or not: the lines say which).
 */
export async function fsckCommand(opts: { config: string; repair?: boolean; json?: boolean }, print: Print) {
  const config = loadConfigFile(opts.config);
  const metadata = await openGatewayStore(opts.config);
  try {
    const store = await openBlobStore(config, process.env, { tool: true });
    try {
      const line = (f: FsckFinding) =>
        `${f.kind}  ${f.repository ? `${f.repository}@` : ''}${f.digest}  ${f.detail}${f.repaired ? '  (repaired: removed)' : ''}`;
      const report = await fsck(store, metadata, {
        repair: opts.repair === true,
        storeIsShared: !(config.metadata?.driver === 'postgres' && config.store?.driver !== 's3'),
        ...(opts.json ? {} : { onFinding: (f: FsckFinding) => print(line(f)) }),
      });
      if (opts.json) print(JSON.stringify(report, null, 2));
      else
        print(
          `checked ${report.blobs} blobs (${report.bytes} bytes) and ${report.manifests} admissions: ${report.findings.length === 0 ? 'no problems' : `${report.findings.length} problem(s)`}` +
            (report.manifestsNotStored > 0
              ? `; ${report.manifestsNotStored} admitted manifest(s) not stored here (fetched again by digest when pulled)`
              : ''),
        );
      return report.findings.length === 0 ? 0 : 1;
    } finally {
      await store.close?.();
    }
  } finally {
    await metadata.close();
  }
}
