// pnpm hooks for this workspace.
//
// beforePacking: the manifest a published @mdev package carries. Every script in a package's
// package.json is for working in this repository (build, typecheck, bench, fuzz, mdev) and names
// files that are not shipped (tsup.config.ts, tsconfig.json, bench/, fuzz/, src/), so the
// published manifest carries none. `pnpm pack` and `pnpm publish` both run this hook.
module.exports = {
  hooks: {
    beforePacking(pkg) {
      const { scripts, ...published } = pkg;
      return published;
    },
  },
};
