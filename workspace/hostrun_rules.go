package workspace

import (
	"path"
	"path/filepath"
	"strings"
)

// Which files are host-run is decided by families, not by a list of tools:
// a list misses the next tool, a family covers it. A path is host-run when
// any of these holds (over-flagging costs a look; missing one costs the
// host):
//
//  1. Hidden: any part of it starts with a dot. Tools keep their
//     configuration, hooks, CI, editor, agent and dev container settings in
//     dotfiles and dot-directories (.envrc, .exrc, .nvim.lua, .eslintrc.cjs,
//     .cargo/config.toml, .github/, .gitlab-ci.yml, .circleci/, .vscode/,
//     .devcontainer.json, .claude/, .mcp.json, .git and what is in it).
//     Only placeholders nothing reads (.gitkeep, .keep) are not.
//  2. A build or task entry point, a dependency manifest or lock, or a
//     toolchain pin, by its conventional name (buildNames, or a name of the
//     Makefile/Dockerfile/compose families).
//  3. A tool's configuration module: <tool>.config.<ext>, <tool>.conf.<ext>
//     or <tool>rc.<ext> with a code or data extension (eslint.config.js,
//     vite.config.ts, karma.conf.js, prettierrc.json), and the "<Tool>file"
//     family (Gemfile, Jenkinsfile, Vagrantfile, Gulpfile.js, Tiltfile).
//  4. Instructions that agents on the host obey (AGENTS.md, CLAUDE.md).
//  5. A directory git treats as a repository, whatever its name: found by
//     the scan (isGitDirAt), not by the path.
//
// What no family covers: a file that a person runs by hand (scripts/x.sh)
// or that code imports (src/*.go). Those are the task's work, for the
// review of the files changed.

// inertDotNames are hidden files that no tool reads.
var inertDotNames = map[string]bool{".gitkeep": true, ".keep": true}

// buildNames are build and task entry points, manifests, locks and
// toolchain pins that a host tool reads or runs on its own.
var buildNames = map[string]bool{
	// make, just, task, rake, and other runners
	"justfile": true, "Taskfile.yml": true, "Taskfile.yaml": true, "Taskfile.dist.yml": true,
	"Rakefile": true, "rakefile": true, "SConstruct": true, "SConscript": true, "Snakefile": true,
	"build.xml": true, "build.sbt": true, "build.zig": true, "build.zig.zon": true, "tasks.py": true,
	"fabfile.py": true, "noxfile.py": true, "conftest.py": true, "tox.ini": true, "pytest.ini": true,
	"sitecustomize.py": true, "usercustomize.py": true, "manage.py": true,
	// configure and build systems
	"configure": true, "configure.ac": true, "configure.in": true, "Makefile.am": true, "Makefile.in": true,
	"CMakeLists.txt": true, "CMakePresets.json": true, "CMakeUserPresets.json": true, "meson.build": true,
	"meson_options.txt": true, "meson.options": true, "BUILD": true, "BUILD.bazel": true, "WORKSPACE": true,
	"WORKSPACE.bazel": true, "MODULE.bazel": true, "BUCK": true, "premake5.lua": true, "xmake.lua": true,
	// JVM
	"build.gradle": true, "build.gradle.kts": true, "settings.gradle": true, "settings.gradle.kts": true,
	"gradle.properties": true, "gradlew": true, "gradlew.bat": true, "gradle-wrapper.properties": true,
	"gradle-wrapper.jar": true, "pom.xml": true, "mvnw": true, "mvnw.cmd": true,
	// manifests, locks and toolchain pins
	"package.json": true, "package-lock.json": true, "npm-shrinkwrap.json": true, "yarn.lock": true,
	"pnpm-lock.yaml": true, "pnpm-workspace.yaml": true, "bun.lock": true, "bun.lockb": true, "bunfig.toml": true,
	"deno.json": true, "deno.jsonc": true, "deno.lock": true, "lerna.json": true, "nx.json": true, "turbo.json": true,
	"setup.py": true, "setup.cfg": true, "pyproject.toml": true, "requirements.txt": true, "Pipfile.lock": true,
	"poetry.lock": true, "uv.lock": true, "pdm.lock": true, "environment.yml": true, "environment.yaml": true,
	"go.mod": true, "go.sum": true, "go.work": true, "go.work.sum": true,
	"Cargo.toml": true, "Cargo.lock": true, "build.rs": true, "rust-toolchain": true, "rust-toolchain.toml": true,
	"Gemfile.lock": true, "composer.json": true, "composer.lock": true, "mix.exs": true, "mix.lock": true,
	"rebar.config": true, "stack.yaml": true, "cabal.project": true, "Setup.hs": true, "dune": true,
	"dune-project": true, "Package.swift": true, "Podfile.lock": true, "pubspec.yaml": true,
	"flake.nix": true, "flake.lock": true, "shell.nix": true, "default.nix": true, "devbox.json": true,
	"global.json": true, "nuget.config": true, "NuGet.Config": true, "mise.toml": true, "lefthook.yml": true, "lefthook.yaml": true, "lefthook-local.yml": true,
	"renovate.json": true, "skaffold.yaml": true, "devfile.yaml": true, "Chart.yaml": true, "values.yaml": true,
	// CI systems whose file is not hidden
	"azure-pipelines.yml": true, "azure-pipelines.yaml": true, "bitbucket-pipelines.yml": true,
	"appveyor.yml": true, "buildspec.yml": true, "cloudbuild.yaml": true, "cloudbuild.yml": true,
	"codemagic.yaml": true, "wercker.yml": true, "bitrise.yml": true, "Jenkinsfile": true,
	// agents on the host
	"AGENTS.md": true, "AGENTS.override.md": true, "CLAUDE.md": true, "CLAUDE.local.md": true, "GEMINI.md": true,
}

// docExts mark documentation, which no tool of a family runs.
var docExts = map[string]bool{".md": true, ".txt": true, ".rst": true, ".adoc": true, ".html": true, ".pdf": true, ".orig": true, ".bak": true}

// buildExts are the extensions of files in a build system's own language,
// which it loads from where its entry point says (make includes, rake
// tasks, bazel and cmake modules, msbuild projects and the props it
// imports into every project).
var buildExts = map[string]bool{
	".mk": true, ".make": true, ".rake": true, ".bzl": true, ".cmake": true, ".gradle": true, ".sbt": true,
	".nix": true, ".gemspec": true, ".cabal": true, ".dockerfile": true, ".containerfile": true,
	".code-workspace": true, ".csproj": true, ".fsproj": true, ".vbproj": true, ".vcxproj": true,
	".props": true, ".targets": true,
}

// configExts are the extensions of configuration modules that a tool loads
// and, for the code ones, runs.
var configExts = map[string]bool{
	"js": true, "cjs": true, "mjs": true, "ts": true, "cts": true, "mts": true, "jsx": true, "tsx": true,
	"json": true, "json5": true, "jsonc": true, "yaml": true, "yml": true, "toml": true, "py": true,
	"rb": true, "lua": true, "coffee": true, "sh": true,
}

// isHostRun reports whether the repository-relative path (slash-separated)
// is a file that tools on the host run or obey without asking.
func isHostRun(rel string) bool {
	rel = filepath.ToSlash(rel)
	dotted := false
	for _, part := range strings.Split(rel, "/") {
		dotted = dotted || isDotName(part)
	}
	return hostRunName(path.Base(rel), dotted)
}

// hostRunName is isHostRun of a file called name, in a directory below a
// hidden one if dotted: the walk of the work tree knows that already.
func hostRunName(name string, dotted bool) bool {
	return dotted || isDotName(name) || buildNames[name] || buildFamily(name) || configModule(name)
}

// isDotName says whether a path component is hidden, where tools keep
// their settings.
func isDotName(part string) bool {
	return strings.HasPrefix(part, ".") && part != "." && part != ".." && !inertDotNames[part]
}

// buildFamily: the Makefile, Dockerfile and compose families, and the
// "<Tool>file" names (Gemfile, Vagrantfile, Gulpfile.js, Jenkinsfile.prod).
func buildFamily(name string) bool {
	lower := strings.ToLower(name)
	if docExts[path.Ext(lower)] {
		return false // makefile.md, Dockerfile.txt: about the file, not read by its tool
	}
	if buildExts[path.Ext(lower)] {
		return true
	}
	stem, _, _ := strings.Cut(lower, ".")
	switch {
	case stem == "makefile" || stem == "gnumakefile":
		return true
	case stem == "dockerfile" || stem == "containerfile":
		return true
	case (strings.HasPrefix(stem, "compose") || strings.HasPrefix(stem, "docker-compose")) && (strings.HasSuffix(lower, ".yml") || strings.HasSuffix(lower, ".yaml")):
		return true
	case strings.HasPrefix(lower, "jenkinsfile") || strings.HasPrefix(lower, "azure-pipelines"):
		return true
	}
	// "<Tool>file": a capitalised word ending in "file" (Gemfile, Brewfile,
	// Procfile, Earthfile), with or without an extension; gulpfile.js and
	// gruntfile.js are spelled in lower case too.
	origStem, _, _ := strings.Cut(name, ".")
	if len(origStem) > 4 && strings.HasSuffix(origStem, "file") && origStem[0] >= 'A' && origStem[0] <= 'Z' && isLetters(origStem) {
		return true
	}
	return stem == "gulpfile" || stem == "gruntfile" || stem == "justfile" || stem == "taskfile"
}

// configModule: <tool>.config.<ext>, <tool>.conf.<ext>, <tool>rc.<ext>,
// <tool>rc (vite.config.ts, karma.conf.js, eslint.config.mjs,
// babel.config.json, prettierrc.yaml).
func configModule(name string) bool {
	parts := strings.Split(strings.ToLower(name), ".")
	if len(parts) < 2 || !configExts[parts[len(parts)-1]] {
		return false
	}
	for _, p := range parts[1 : len(parts)-1] {
		if p == "config" || p == "conf" {
			return true
		}
	}
	// tsconfig.json, jsconfig.json, tsconfig.build.json: TypeScript loads
	// the plugins they name into the editor's language server.
	first := parts[0]
	return strings.HasSuffix(first, "config") || len(parts) == 2 && len(first) > 3 && strings.HasSuffix(first, "rc")
}

func isLetters(s string) bool {
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// HostRunOf lists the paths among paths (repository-relative, slash
// separated) that tools on the host run or obey, in their order: for a
// branch, whose files reach the work tree only when the user applies it.
func HostRunOf(paths []string) []string {
	var out []string
	for _, p := range paths {
		if isHostRun(p) {
			out = append(out, p)
		}
	}
	return out
}
