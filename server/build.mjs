// `npm run build -w server`: the service as plain JavaScript, what `npm start` runs. One bundle
// for the process and one for its workers thread, with the project's own packages inside and
// every package from node_modules left to Node (chDB and the others load native code). Run
// from source with tsx, each thread compiled every module again: ~120 MB of memory a thread.
import { build } from 'esbuild'

const external = {
  name: 'node-modules-external',
  setup(b) {
    // bare imports are packages, loaded by Node at run time; @referral/* are this repository's
    b.onResolve({ filter: /^[^./]/ }, (args) =>
      args.path.startsWith('@referral/') ? undefined : { path: args.path, external: true },
    )
  },
}

await build({
  entryPoints: {
    main: 'src/main.ts',
    'workers-thread-main': 'src/workers-thread-main.ts',
  },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  plugins: [external],
  logLevel: 'warning',
})
