import { runOps } from './ops.ts'

/** `npm run ops -- <command>` (and `npm run reconcile`): see ops.ts. */
runOps(process.argv.slice(2), process.env, process.stdout).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`)
    process.exit(1)
  },
)
