// Builds one JavaScript plugin to a WebAssembly component of the
// `crm-plugin` world with componentize-js.
//
//   node build.mjs [--wit <dir>] <source.js> <out.wasm>
//
// kernel/plugin-artifacts/build.rs runs this for every folder under
// tests/plugins-js/, from a copy next to the node_modules it installs in the
// target directory. `--wit` defaults to wit/crm-plugin@0.1.0 of the
// repository holding this script.
//
// Every optional engine feature is disabled, so the component imports only
// the interfaces of the plugin world (no WASI): a plugin cannot use
// console, timers, fetch, Date.now() or real randomness, and an uncaught
// error traps instead of printing.

import { componentize } from '@bytecodealliance/componentize-js';
import { rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const usage = 'usage: node build.mjs [--wit <dir>] <source.js> <out.wasm>';

const args = process.argv.slice(2);
let witPath = resolve(dirname(fileURLToPath(import.meta.url)), '../../wit/crm-plugin@0.1.0');
const witFlag = args.indexOf('--wit');
if (witFlag !== -1) {
  if (witFlag + 1 >= args.length) {
    console.error(usage);
    process.exit(2);
  }
  witPath = resolve(args[witFlag + 1]);
  args.splice(witFlag, 2);
}
if (args.length !== 2) {
  console.error(usage);
  process.exit(2);
}
const [sourcePath, outPath] = args.map((path) => resolve(path));

const started = Date.now();
const { component } = await componentize({
  sourcePath,
  witPath,
  worldName: 'crm-plugin',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});

// Written under another name first, so that an interrupted build never
// leaves a truncated component where the kernel's tests look for it.
const partial = `${outPath}.partial`;
await writeFile(partial, component);
await rename(partial, outPath);
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`${outPath}: ${component.length} bytes in ${seconds} s`);
