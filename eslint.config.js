// Lint rules, including the import direction that keeps the layers honest:
//   oci  <-  policies  <-  gateway | runner  <-  cli
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layer = (dir, forbidden, extra = []) => ({
  files: [`${dir}/**/*.ts`],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: [
        ...forbidden.map((f) => ({ group: [`**/${f}/**`, `../${f}/*`, `../../${f}/*`, `../../../${f}/*`], message: `${dir}/ must not import from ${f}/ (layering: oci <- policies <- gateway|runner <- cli)` })),
        ...extra,
      ],
    }],
  },
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error',
        { selector: "CallExpression[callee.property.name='exec']", message: 'spawn with an argv array; no shell strings' },
        { selector: "CallExpression[callee.name='exec']", message: 'spawn with an argv array; no shell strings' },
        { selector: "CallExpression[callee.name='execSync']", message: 'spawn with an argv array; no shell strings' },
        { selector: 'ImportExpression', message: 'no loading code by name at run time' },
      ],
    },
  },
  layer('oci', ['policies', 'gateway', 'runner', 'cli']),
  layer('policies', ['gateway', 'runner', 'cli'], [
    { group: ['fastify', 'better-sqlite3'], message: 'policies/ stays free of HTTP and storage' },
  ]),
  layer('gateway', ['runner', 'cli']),
  layer('runner', ['gateway', 'cli']),
);
