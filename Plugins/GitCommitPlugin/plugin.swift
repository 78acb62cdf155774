import Foundation
import PackagePlugin

/// Writes the commit the sources are built from into the `csmr` executable (`GitCommit.built`),
/// so `run.yaml` names it wherever the binary runs, not only inside the checkout.
///
/// A prebuild command runs before every build; it rewrites the generated file only when the
/// commit changes, so an unchanged checkout recompiles nothing. Outside a git checkout (a source
/// tarball) the commit is "unknown"; uncommitted changes to tracked files add "-dirty".
@main
struct GitCommitPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let outputs = context.pluginWorkDirectoryURL.appending(path: "generated")
        let file = outputs.appending(path: "GitCommit.swift").path
        let root = context.package.directoryURL.path
        let script = """
            mkdir -p '\(outputs.path)'
            commit=$(git -C '\(root)' rev-parse HEAD 2>/dev/null) || commit=unknown
            if [ "$commit" != unknown ] && ! git -C '\(root)' diff --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
            text="enum GitCommit { static let built = \\"$commit\\" }"
            if [ ! -f '\(file)' ] || [ "$(cat '\(file)')" != "$text" ]; then printf '%s\\n' "$text" > '\(file)'; fi
            """
        return [.prebuildCommand(displayName: "Recording the git commit of the build", executable: URL(fileURLWithPath: "/bin/sh"),
                                 arguments: ["-c", script], outputFilesDirectory: outputs)]
    }
}
