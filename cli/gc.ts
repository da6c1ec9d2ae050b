import { loadConfigFile } from '../gateway/config.js';
import { collectGarbage, type GcReport } from '../gateway/store/gc.js';
import { openBlobStore } from '../gateway/store/open-blob-store.js';
import { openGatewayStore } from './policy-tools.js';

type Print = (line: string) => void;

/**
 * `portcullis gc --config FILE [--dry-run] [--json]`: retires admissions by the config's
 * retention rules and deletes blobs nothing uses. In a fleet one replica at a time
 * collects (a lock in PostgreSQL): another that finds it taken says so and exits 0.
 */
export async function gcCommand(opts: { config: string; dryRun?: boolean; json?: boolean }, print: Print) {
  const config = loadConfigFile(opts.config);
  const metadata = await openGatewayStore(opts.config);
  try {
    const store = await openBlobStore(config, process.env, { tool: true });
    try {
      const run = () =>
        collectGarbage(store, metadata, {
          rules: config.retention?.rules ?? [],
          graceMs: (config.retention?.graceMinutes ?? 60) * 60_000,
          now: Date.now(),
          dryRun: opts.dryRun === true,
        });
      const report: GcReport | undefined = metadata.exclusively ? await metadata.exclusively(run) : await run();
      if (!report) {
        print('another replica is collecting garbage now: nothing done');
        return 0;
      }
      if (opts.json) print(JSON.stringify(report, null, 2));
      else {
        const verb = report.dryRun ? 'would retire' : 'retired';
        for (const r of report.retired) print(`${verb}  ${r.repository}@${r.digest}  (${r.why})`);
        for (const b of report.budgets)
          print(
            `budget  ${b.scope}: ${b.before} bytes held, ${b.after} after, budget ${b.maxBytes}${b.overByPins ? ' (still over: pinned digests are never retired; release pins with portcullis tags release)' : ''}`,
          );
        for (const b of report.deleted)
          print(`${report.dryRun ? 'would delete' : 'deleted'}  ${b.digest}  ${b.size} bytes`);
        print(
          `${report.manifestsChecked} admissions and ${report.blobsChecked} blobs checked: ${report.retired.length} ${verb}, ${report.deleted.length} blobs (${report.bytesFreed} bytes) ${report.dryRun ? 'would go' : 'deleted'}${report.inGrace > 0 ? `, ${report.inGrace} unused but younger than the grace period` : ''}`,
        );
      }
      return 0;
    } finally {
      await store.close?.();
    }
  } finally {
    await metadata.close();
  }
}
