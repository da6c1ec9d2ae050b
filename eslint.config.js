// Lint rules, including the import direction that keeps the layers honest:
//   oci  <-  policies  <-  gateway | runner  <-  cli
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

const noShell = [
  {
    name: 'node:child_process',
    importNames: ['exec', 'execSync'],
    message: 'spawn with an argv array; no shell strings',
  },
  { name: 'child_process', importNames: ['exec', 'execSync'], message: 'spawn with an argv array; no shell strings' },
];

const layer = (dir, forbidden, extra = []) => ({
  files: [`${dir}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        paths: noShell,
        patterns: [
          ...forbidden.map((f) => ({
            group: [`**/${f}/**`, `../${f}/*`, `../../${f}/*`, `../../../${f}/*`],
            message: `${dir}/ must not import from ${f}/ (layering: oci <- policies <- gateway|runner <- cli)`,
          })),
          ...extra,
        ],
      },
    ],
  },
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', { paths: noShell }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "Property[key.name='shell'][value.value=true]",
          message: 'spawn with an argv array; no shell strings',
        },
        {
          selector: "ImportExpression:not([source.type='Literal'])",
          message: 'no loading code by name at run time: import only fixed module paths',
        },
      ],
    },
  },
  layer('oci', ['policies', 'gateway', 'runner', 'cli']),
  layer(
    'policies',
    ['gateway', 'runner', 'cli'],
    [{ group: ['fastify', 'better-sqlite3', 'undici'], message: 'policies/ stays free of HTTP and storage' }],
  ),
  {
    // Only the loader does I/O in policies/: the evaluator and verifiers are pure.
    files: ['policies/**/*.ts'],
    ignores: ['policies/loader.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...noShell,
            { name: 'node:fs', message: 'only policies/loader.ts reads files' },
            { name: 'node:fs/promises', message: 'only policies/loader.ts reads files' },
          ],
          patterns: [
            {
              group: [
                '**/gateway/**',
                '**/runner/**',
                '**/cli/**',
                '../gateway/*',
                '../runner/*',
                '../cli/*',
                '../../gateway/*',
                '../../runner/*',
                '../../cli/*',
              ],
              message: 'policies/ must not import from gateway/, runner/ or cli/',
            },
            { group: ['fastify', 'better-sqlite3', 'undici'], message: 'policies/ stays free of HTTP and storage' },
          ],
        },
      ],
    },
  },
  layer('gateway', ['runner', 'cli']),
  layer('runner', ['gateway', 'cli']),
  // Formatting is Prettier's (npm run lint checks it): no style rules that could disagree.
  prettier,
);
