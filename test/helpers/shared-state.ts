import type { TestPostgres } from './postgres.js';
import type { TestSwift } from './swift.js';

/**
 * A gateway config's `metadata:` and `store:` sections for a fleet on one PostgreSQL
 * database and one bucket, and the secret files they name (relative to the config).
 */
export async function sharedState(
  pg: TestPostgres,
  swift: TestSwift,
  opts: { prefix?: string } = {},
): Promise<{ files: Record<string, string>; extraConfig: string; bucket: string }> {
  const [db, bucket] = await Promise.all([pg.createDatabase(), swift.createBucket()]);
  return {
    bucket,
    files: { 'pg-password': `${pg.password}\n`, 's3-secret': `${swift.secretAccessKey}\n` },
    extraConfig: [
      'metadata:',
      '  driver: postgres',
      `  url: ${db.url}`,
      '  passwordFile: pg-password',
      'store:',
      '  driver: s3',
      `  endpoint: ${swift.endpoint}`,
      `  region: ${swift.region}`,
      `  bucket: ${bucket}`,
      ...(opts.prefix !== undefined ? [`  prefix: ${opts.prefix}`] : []),
      `  accessKeyId: "${swift.accessKeyId}"`,
      '  secretAccessKeyFile: s3-secret',
    ].join('\n'),
  };
}
