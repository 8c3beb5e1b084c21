package runner

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codex-connector/codex-connector/backend/docker"
	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/images/imagestest"
	"github.com/codex-connector/codex-connector/store"
	"github.com/docker/docker/client"
)

// The toolchain images `make test-images` builds: Debian with Go, and with
// Python and pytest. Neither has Node.
const (
	goImage     = "codex-connector/test-go:bookworm"
	pythonImage = "codex-connector/test-python:bookworm"
)

// needImage fails the test, saying how to make it, when the engine lacks
// a toolchain image.
func needImage(t *testing.T, ref string) {
	t.Helper()
	if _, err := imagestest.Engine(t).ImageInspect(context.Background(), ref); err != nil {
		t.Fatalf("this test runs Codex on %s: %v — build it with `make test-images`", ref, err)
	}
}

// writeRepoFiles writes files (path → content) into repo, owned as the
// repository is.
func writeRepoFiles(t *testing.T, repo string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(repo, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	imagestest.Chown(t, repo)
}

// modelSaw is the outputs of the commands Codex ran, as the model
// received them: proof of what ran inside the container.
func modelSaw(model *imagestest.ModelServer) string {
	var b strings.Builder
	for _, req := range model.Requests() {
		input, _ := req["input"].([]any)
		for _, item := range input {
			m, _ := item.(map[string]any)
			if m["type"] == "function_call_output" {
				fmt.Fprintln(&b, m["output"])
			}
		}
	}
	return b.String()
}

// completed runs a task to its end, which must be completed, and returns
// it with its log.
func (h *harness) completed(t *testing.T, spec Spec) (*store.Task, string) {
	t.Helper()
	task := h.startAndWait(t, spec)
	log := readFile(t, h.LogPath(task.ID))
	if task.Status != store.Completed {
		t.Fatalf("status %s (%s), log:\n%s", task.Status, task.Error, log)
	}
	return task, log
}

// checkTaskImage checks that the task ran on Codex put onto base, and that
// the record names the image and its id as the engine has them.
func checkTaskImage(t *testing.T, task *store.Task, base string) {
	t.Helper()
	if task.BaseImage != base || !strings.HasPrefix(task.Image, images.TaskRepo+":") {
		t.Fatalf("record: base %q, image %q; want Codex put onto %s", task.BaseImage, task.Image, base)
	}
	img, err := imagestest.Engine(t).ImageInspect(context.Background(), task.Image)
	if err != nil {
		t.Fatal(err)
	}
	// Task images are named by what they are made of: the base's id.
	bimg, err := imagestest.Engine(t).ImageInspect(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	if task.ImageID == "" || task.ImageID != img.ID || img.Config.Labels[images.BaseIDLabel] != bimg.ID {
		t.Fatalf("record: image id %q, the engine's %q (labels %v, base %s)", task.ImageID, img.ID, img.Config.Labels, bimg.ID)
	}
}

// TestCodexRunsGoTestsInAGoToolchainImage: the real Codex CLI, put onto a
// Debian image with Go and without Node, runs the repository's failing Go
// test; the failure reaches the log, the model and the summary.
func TestCodexRunsGoTestsInAGoToolchainImage(t *testing.T) {
	t.Parallel()
	needImage(t, goImage)
	model := imagestest.StartModelServer(t, imagestest.Engine(t),
		imagestest.Turn{Command: "go test ./..."},
		imagestest.Turn{Command: "if command -v node; then echo node is here; else echo no node in this image; fi; command -v codex"},
		imagestest.Turn{Message: "TestAdd fails: Add subtracts."},
	)
	h := newHarness(t, func(c *Config) {
		codexConfig(t, model)(c)
		c.Toolchains = Toolchains{Default: goImage}
	})
	repo := newRepo(t)
	writeRepoFiles(t, repo, map[string]string{
		"go.mod":       "module example.test/calc\n\ngo 1.19\n",
		"calc.go":      "package calc\n\nfunc Add(a, b int) int { return a - b }\n",
		"calc_test.go": "package calc\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif got := Add(2, 3); got != 5 {\n\t\tt.Fatalf(\"Add(2, 3) = %d, want 5\", got)\n\t}\n}\n",
	})
	task, log := h.completed(t, Spec{Prompt: "make the failing test pass", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex", Timeout: 2 * time.Minute})
	checkTaskImage(t, task, goImage)
	if task.ImageSource != "config.json images.default" {
		t.Errorf("image source %q", task.ImageSource)
	}
	out := modelSaw(model)
	t.Run("go test ran, and its failure is in the log and went to the model", func(t *testing.T) {
		for _, want := range []string{"--- FAIL: TestAdd", "Add(2, 3) = -1, want 5"} {
			if !strings.Contains(log, want) || !strings.Contains(out, want) {
				t.Errorf("%q missing from the log or from what the model received:\n%s", want, out)
			}
		}
	})
	t.Run("the summary has go test with its exit code", func(t *testing.T) {
		s := task.Summary
		if s == nil || len(s.Commands) != 2 || !strings.Contains(s.Commands[0].Command, "go test ./...") ||
			s.Commands[0].ExitCode == nil || *s.Commands[0].ExitCode != 1 {
			t.Fatalf("summary %+v", s)
		}
	})
	t.Run("the image has no Node, and Codex ran all the same", func(t *testing.T) {
		if !strings.Contains(out, "no node in this image") || strings.Contains(out, "node is here") {
			t.Fatalf("outputs:\n%s", out)
		}
		if !strings.Contains(out, "/opt/codex-connector/codex/bin/codex") {
			t.Fatalf("codex is not the native one put onto the image:\n%s", out)
		}
	})
}

// TestCodexRunsPytestInAPythonToolchainImage: the image comes from a
// config.json entry whose pattern matches the repository.
func TestCodexRunsPytestInAPythonToolchainImage(t *testing.T) {
	t.Parallel()
	needImage(t, pythonImage)
	model := imagestest.StartModelServer(t, imagestest.Engine(t),
		imagestest.Turn{Command: "python3 -m pytest -q -p no:cacheprovider"},
		imagestest.Turn{Message: "test_add fails."},
	)
	repo := newRepo(t)
	h := newHarness(t, func(c *Config) {
		codexConfig(t, model)(c)
		c.Toolchains = Toolchains{Default: goImage, Rules: []ToolchainRule{
			{Path: "/nowhere/*", Image: goImage},
			{Path: filepath.Dir(repo) + "/*", Image: pythonImage},
		}}
	})
	writeRepoFiles(t, repo, map[string]string{
		"calc.py":      "def add(a, b):\n    return a - b\n",
		"test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
	})
	task, log := h.completed(t, Spec{Prompt: "run the tests", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex", Timeout: 2 * time.Minute})
	checkTaskImage(t, task, pythonImage)
	if want := "config.json images.repos entry " + filepath.Dir(repo) + "/*"; task.ImageSource != want {
		t.Errorf("image source %q, want %q", task.ImageSource, want)
	}
	out := modelSaw(model)
	if !strings.Contains(out, "1 failed") || !strings.Contains(log, "1 failed") || !strings.Contains(out, "assert -1 == 5") {
		t.Fatalf("pytest's failure is not in the log and the outputs:\n%s", out)
	}
	if s := task.Summary; s == nil || len(s.Commands) != 1 || s.Commands[0].ExitCode == nil || *s.Commands[0].ExitCode != 1 {
		t.Fatalf("summary %+v", task.Summary)
	}
}

// goProxy is a Go module proxy on the host side of the bridge serving one
// module, counting what it serves.
type goProxy struct {
	Addr   string
	module string
	mu     sync.Mutex
	served []string
}

func startGoProxy(t *testing.T, module string) *goProxy {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(imagestest.BridgeGateway(t, imagestest.Engine(t)), "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := &goProxy{Addr: ln.Addr().String(), module: module}
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	for name, content := range map[string]string{
		"go.mod":   "module " + module + "\n\ngo 1.19\n",
		"greet.go": "package greet\n\nfunc Hello() string { return \"hello from the proxy\" }\n",
	} {
		w, _ := zw.Create(module + "@v1.0.0/" + name)
		_, _ = w.Write([]byte(content))
	}
	_ = zw.Close()
	prefix := "/" + module + "/@v/"
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.served = append(p.served, r.URL.Path)
		p.mu.Unlock()
		switch r.URL.Path {
		case prefix + "list":
			fmt.Fprintln(w, "v1.0.0")
		case prefix + "v1.0.0.info":
			fmt.Fprint(w, `{"Version":"v1.0.0","Time":"2026-01-01T00:00:00Z"}`)
		case prefix + "v1.0.0.mod":
			fmt.Fprint(w, "module "+module+"\n\ngo 1.19\n")
		case prefix + "v1.0.0.zip":
			_, _ = w.Write(zipped.Bytes())
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *goProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.served...)
}

// TestTheGoCacheMakesTheSecondTaskDownloadNothing: two tasks of one user
// run the same tests. The first downloads the module through the egress
// proxy (the proxy's host is in allowedHosts, as a registry's would be)
// and fills the cache volume; the second, in a new container, downloads
// nothing and finds its test result in the build cache.
func TestTheGoCacheMakesTheSecondTaskDownloadNothing(t *testing.T) {
	t.Parallel()
	needImage(t, goImage)
	// A module name of its own: the cache volume is the user's, shared
	// with other tests, and must not hold it already.
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	module := "example.test/greet" + hex.EncodeToString(nonce[:])
	proxy := startGoProxy(t, module)
	model := imagestest.StartModelServer(t, imagestest.Engine(t))
	h := newHarness(t, func(c *Config) {
		codexConfig(t, model)(c)
		c.Toolchains = Toolchains{Default: goImage}
		c.Caches = DefaultCaches
		c.Env = []string{"GOPROXY=http://" + proxy.Addr, "GOSUMDB=off", "GOFLAGS=-mod=mod"}
		c.Egress.AllowedHosts = []string{proxy.Addr}
	})
	repo := newRepo(t)
	writeRepoFiles(t, repo, map[string]string{
		"go.mod":      "module example.test/app\n\ngo 1.19\n\nrequire " + module + " v1.0.0\n",
		"app.go":      "package app\n\nimport greet \"" + module + "\"\n\nfunc Greeting() string { return greet.Hello() }\n",
		"app_test.go": "package app\n\nimport \"testing\"\n\nfunc TestGreeting(t *testing.T) {\n\tif Greeting() != \"hello from the proxy\" {\n\t\tt.Fatal(Greeting())\n\t}\n}\n",
	})
	run := func() (*store.Task, string) {
		model.SetTurns(imagestest.Turn{Command: "go env GOMODCACHE GOCACHE && go test ./..."}, imagestest.Turn{Message: "tests pass"})
		task := h.startAndWait(t, Spec{Prompt: "run the tests", WorkingDirectory: repo, Sandbox: WorkspaceWrite, Model: "gpt-5-codex", Timeout: 2 * time.Minute})
		log := readFile(t, h.LogPath(task.ID))
		if task.Status != store.Completed || task.Summary == nil || len(task.Summary.Commands) != 1 ||
			task.Summary.Commands[0].ExitCode == nil || *task.Summary.Commands[0].ExitCode != 0 {
			t.Fatalf("status %s (%s), summary %+v, log:\n%s", task.Status, task.Error, task.Summary, log)
		}
		return task, log
	}
	_, first := run()
	downloads := proxy.requests()
	if !strings.Contains(strings.Join(downloads, " "), "v1.0.0.zip") {
		t.Fatalf("the first task did not download the module through the proxy: %v\nlog:\n%s", downloads, first)
	}
	if !strings.Contains(first, cacheMount+"/go/mod") || !strings.Contains(first, cacheMount+"/go/build") {
		t.Fatalf("Go does not use the cache volume:\n%s", first)
	}
	second, log := run()
	if got := proxy.requests(); len(got) != len(downloads) {
		t.Fatalf("the second task downloaded again: %v", got[len(downloads):])
	}
	// As the log holds it: JSON, with the tabs escaped.
	if !strings.Contains(log, `ok  \texample.test/app\t(cached)`) {
		t.Errorf("the second task's test result did not come from the build cache:\n%s", log)
	}
	if second.ContainerName == "" {
		t.Fatal("no container recorded")
	}
	t.Run("the cache volume belongs to the repository's owner", func(t *testing.T) {
		vols, err := CacheVolumes(context.Background(), docker.New(imagestest.Engine(t)), fmt.Sprint(testUID))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, v := range vols {
			if v.Labels[LabelCacheRepo] != second.RepoRoot {
				continue // another repository's, or another test's
			}
			if v.Labels[LabelCacheLevel] != WorkspaceWrite {
				t.Errorf("%s: level %q", v.Name, v.Labels[LabelCacheLevel])
			}
			names = append(names, v.Name)
			if v.Name == CacheVolume("go", cacheDomain(second)) {
				var st syscall.Stat_t
				if err := syscall.Stat(v.Mountpoint, &st); err == nil && (st.Uid != testUID || st.Mode&0o777 != 0o700) {
					t.Errorf("%s: owner %d, mode %o", v.Mountpoint, st.Uid, st.Mode&0o777)
				}
			}
		}
		if len(names) != len(DefaultCaches) {
			t.Errorf("cache volumes %v", names)
		}
	})
}

// TestCachesAreMountedOnlyWhereTheTaskMayWrite: a read-only task promises
// to leave nothing behind, so its tools write their caches into its /tmp.
// A cache that is not configured sets nothing.
func TestCachesAreMountedOnlyWhereTheTaskMayWrite(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Caches = []string{"go", "pip", "cargo"} })
	dirs := []string{cacheMount + "/go", cacheMount + "/pip", noCache + "/cargo/registry"}
	for _, level := range SandboxLevels {
		t.Run(level, func(t *testing.T) {
			prompt := "env GOMODCACHE; env PIP_CACHE_DIR; env CARGO_HOME; env npm_config_cache"
			for _, d := range dirs {
				prompt += "; read " + d
			}
			task := h.startAndWait(t, Spec{Prompt: prompt, WorkingDirectory: newRepo(t), Sandbox: level})
			log := readFile(t, h.LogPath(task.ID))
			want := []string{"GOMODCACHE=" + cacheMount + "/go/mod", "PIP_CACHE_DIR=" + cacheMount + "/pip", "CARGO_HOME=" + noCache + "/cargo", "npm_config_cache=\n"}
			if level == ReadOnly {
				want = []string{"GOMODCACHE=" + noCache + "/go/mod", "PIP_CACHE_DIR=" + noCache + "/pip", "CARGO_HOME=" + noCache + "/cargo", "npm_config_cache=\n"}
			}
			for _, w := range want {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			// Reading a directory fails one way when it is there (a volume)
			// and another when it is not.
			for _, d := range dirs {
				mounted := strings.Contains(log, d+": is a directory")
				missing := strings.Contains(log, d+": no such file or directory")
				if mounted == missing || mounted != (level != ReadOnly) {
					t.Errorf("%s at %s: mounted %v, missing %v:\n%s", d, level, mounted, missing, log)
				}
			}
		})
	}
}

// markerImage builds an image on the Debian base holding text in
// /etc/codex-connector-marker, and returns its tag.
func markerImage(t *testing.T, text string) string {
	t.Helper()
	base := "codex-connector/debian:bookworm"
	needImage(t, base)
	// Not in codex-connector/: a repository may not name those.
	tag := "codex-connector-test/marker:" + strings.ReplaceAll(text, " ", "-")
	err := images.BuildFiles(context.Background(), imagestest.Engine(t), tag, map[string][]byte{
		"Dockerfile": []byte("FROM " + base + "\nRUN echo " + text + " > /etc/codex-connector-marker\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// TestADevcontainerChoosesTheImageOnlyWhereTheUserOptedIn: the repository's
// dev container file names an image, asks for privileges, mounts and a
// build. Without the user's opt-in nothing of it counts; with it, only the
// image does, and the build only where the user opted in for it.
func TestADevcontainerChoosesTheImageOnlyWhereTheUserOptedIn(t *testing.T) {
	named := markerImage(t, "named by the dev container file")
	repo := newRepo(t)
	writeRepoFiles(t, repo, map[string]string{
		".devcontainer/devcontainer.json": `{
			// a dev container file as editors write them
			"image": "` + named + `",
			"runArgs": ["--privileged", "--network=host"],
			"mounts": ["source=/,target=/host,type=bind"],
			"capAdd": ["SYS_ADMIN"],
		}`,
	})
	prompt := "read /etc/codex-connector-marker; read /host/etc/hostname; say done"
	run := func(t *testing.T, tc Toolchains) (*store.Task, string) {
		t.Helper()
		var rec *createRecorder
		h := newHarnessOn(t, func(c *Config) { c.Toolchains = tc }, func(c *client.Client) docker.Engine {
			rec = &createRecorder{Client: c}
			return rec
		})
		task := h.startAndWait(t, Spec{Prompt: prompt, WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		log := readFile(t, h.LogPath(task.ID))
		if task.Status != store.Completed {
			t.Fatalf("status %s (%s), log:\n%s", task.Status, task.Error, log)
		}
		created := rec.all()
		if !strings.Contains(created, task.ContainerName) && !strings.Contains(created, `"NetworkMode":"none"`) {
			t.Fatalf("the task's container was not recorded: %s", created)
		}
		for _, bad := range []string{`"Privileged":true`, "SYS_ADMIN", `"Target":"/host"`, `"NetworkMode":"host"`} {
			if strings.Contains(created, bad) {
				t.Errorf("the dev container file changed the container: %s in %s", bad, created)
			}
		}
		if !strings.Contains(log, "/host/etc/hostname") {
			t.Fatalf("the task never tried the mount:\n%s", log)
		}
		return task, log
	}
	t.Run("without the opt-in, the repository chooses nothing", func(t *testing.T) {
		task, log := run(t, Toolchains{})
		if strings.Contains(log, "named by the dev container file") || task.BaseImage != "" || task.Image == "" || strings.HasPrefix(task.Image, images.TaskRepo) {
			t.Fatalf("image %q (base %q), log:\n%s", task.Image, task.BaseImage, log)
		}
	})
	t.Run("with devcontainer true, its image and nothing else", func(t *testing.T) {
		task, log := run(t, Toolchains{Default: goImage, Devcontainer: true})
		if !strings.Contains(log, "named by the dev container file") {
			t.Fatalf("the task did not run on the named image:\n%s", log)
		}
		checkTaskImage(t, task, named)
		if task.ImageSource != ".devcontainer/devcontainer.json" || !strings.Contains(strings.Join(task.ImageNotes, "\n"), "only its image or build is used; capAdd, mounts, runArgs ignored") {
			t.Fatalf("source %q, notes %q", task.ImageSource, task.ImageNotes)
		}
		// The Debian base has bash and no git: the record says so.
		if strings.Join(task.ImageLacks, " ") != "git" || !strings.Contains(strings.Join(LackNotes(task), ""), "has no git") {
			t.Fatalf("lacks %v", task.ImageLacks)
		}
	})
	t.Run("a rule that turns it off wins", func(t *testing.T) {
		task, log := run(t, Toolchains{Devcontainer: true, Rules: []ToolchainRule{{Path: repo, Devcontainer: DevcontainerOff}}})
		if strings.Contains(log, "named by the dev container file") || task.BaseImage != "" {
			t.Fatalf("base %q, log:\n%s", task.BaseImage, log)
		}
	})
}

// TestADevcontainerBuildRunsOnlyWhereTheUserOptedInForIt: the Dockerfile
// builds only with "build" for the repository. Its context is the
// repository's as committed, and a committed symlink in it to a file on
// the host does not bring the file into the image.
func TestADevcontainerBuildRunsOnlyWhereTheUserOptedInForIt(t *testing.T) {
	base := "codex-connector/debian:bookworm"
	needImage(t, base)
	repo := newRepo(t)
	dockerfile := "FROM " + base + "\nARG GREETING\nRUN echo \"$GREETING\" > /etc/codex-connector-marker\nCOPY README /etc/readme-from-context\n"
	writeRepoFiles(t, repo, map[string]string{
		".devcontainer/devcontainer.json": `{"build": {"dockerfile": "Dockerfile", "context": "..", "args": {"GREETING": "built from the repository"}}}`,
		".devcontainer/Dockerfile":        dockerfile,
	})
	commitAll(t, repo)
	prompt := "read /etc/codex-connector-marker; read /etc/readme-from-context; say done"
	t.Run("the image opt-in alone does not build", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Toolchains = Toolchains{Devcontainer: true} })
		task := h.startAndWait(t, Spec{Prompt: prompt, WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		log := readFile(t, h.LogPath(task.ID))
		if strings.Contains(log, "built from the repository") || task.ImageBuild != nil ||
			!strings.Contains(strings.Join(task.ImageNotes, ""), `"devcontainer": "build"`) {
			t.Fatalf("build %+v, notes %q, log:\n%s", task.ImageBuild, task.ImageNotes, log)
		}
	})
	buildOptIn := buildOptIn(repo, false)
	t.Run("with the build opt-in, the Dockerfile builds from the repository", func(t *testing.T) {
		h := newHarness(t, buildOptIn)
		task := h.startAndWait(t, Spec{Prompt: prompt, WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		log := readFile(t, h.LogPath(task.ID))
		if task.Status != store.Completed {
			t.Fatalf("status %s (%s), log:\n%s", task.Status, task.Error, log)
		}
		for _, want := range []string{"built from the repository", "hello"} {
			if !strings.Contains(log, want) {
				t.Fatalf("log lacks %q:\n%s", want, log)
			}
		}
		if b := task.ImageBuild; b == nil || b.Context != "." || b.Dockerfile != ".devcontainer/Dockerfile" || !strings.HasPrefix(task.Image, images.TaskRepo) {
			t.Fatalf("build %+v, image %q", b, task.Image)
		}
	})
	t.Run("a symlink in the context does not bring a host file in", func(t *testing.T) {
		secret := filepath.Join(t.TempDir(), "host-secret")
		needle := "host-secret-" + strings.Repeat("7", 12)
		if err := os.WriteFile(secret, []byte(needle+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		writeRepoFiles(t, repo, map[string]string{".devcontainer/Dockerfile": dockerfile + "COPY leak /etc/leak\n"})
		if err := os.Symlink(secret, filepath.Join(repo, "leak")); err != nil {
			t.Fatal(err)
		}
		commitAll(t, repo) // a build runs what is committed
		h := newHarness(t, buildOptIn)
		task := h.startAndWait(t, Spec{Prompt: prompt + "; read /etc/leak", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
		log := readLog(h.LogPath(task.ID)) // none when the build failed
		if strings.Contains(log, needle) || strings.Contains(fmt.Sprint(task), needle) {
			t.Fatalf("the host file reached the task through the build context:\n%s", log)
		}
		// The build tried the COPY, and the engine found no such file in
		// the context: the symlink went in as a symlink, not followed.
		if task.Status != store.Failed || !strings.Contains(task.Error, "COPY failed") || !strings.Contains(task.Error, "leak") {
			t.Fatalf("status %s (%s), log:\n%s", task.Status, task.Error, log)
		}
	})
}

// TestAnImageWithoutAShellIsRefusedClearly: Codex runs its commands in a
// shell; an image with none fails the task at launch with the reason.
func TestAnImageWithoutAShellIsRefusedClearly(t *testing.T) {
	h := newHarness(t, nil)
	shell := h.cfg.Image.Ref // FROM scratch: no /bin/sh
	h.cfg.Toolchains = Toolchains{Default: shell}
	task := h.startAndWait(t, Spec{Prompt: "say hi", WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
	if task.Status != store.Failed || !strings.Contains(task.Error, "has no /bin/sh") || !strings.Contains(task.Error, shell) {
		t.Fatalf("status %s, error %q", task.Status, task.Error)
	}
}

func TestToolchainChoice(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "src", "api")
	if err := os.MkdirAll(filepath.Join(repo, ".devcontainer"), 0o755); err != nil {
		t.Fatal(err)
	}
	tc := Toolchains{Default: "base:default", Rules: []ToolchainRule{
		{Path: filepath.Join(root, "src", "ap"), Image: "not:a-prefix-of-a-name"},
		{Path: filepath.Join(root, "src"), Image: "base:src"},
		{Path: filepath.Join(root, "*", "api"), Image: "base:glob"},
	}}
	for name, tt := range map[string]struct {
		tc         Toolchains
		root       string
		base, from string
	}{
		"the first rule that names the repository wins": {tc, repo, "base:src", "config.json images.repos entry " + filepath.Join(root, "src")},
		"a pattern matches the whole root":              {Toolchains{Rules: tc.Rules[2:]}, repo, "base:glob", "config.json images.repos entry " + filepath.Join(root, "*", "api")},
		"no rule: the default":                          {tc, root, "base:default", "config.json images.default"},
		"nothing configured: the Codex image":           {Toolchains{}, repo, "", "the Codex image alone (no toolchain image configured)"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := tt.tc.choose(tt.root)
			if err != nil || c.base != tt.base || c.source != tt.from {
				t.Fatalf("got %q from %q (%v), want %q from %q", c.base, c.source, err, tt.base, tt.from)
			}
		})
	}
	file := filepath.Join(repo, ".devcontainer", "devcontainer.json")
	optedIn := Toolchains{Rules: []ToolchainRule{{Path: repo, Devcontainer: DevcontainerImage}}}
	t.Run("an opted-in dev container file is read, never through a symlink", func(t *testing.T) {
		if err := os.Symlink("/etc/passwd", file); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file)
		_, err := optedIn.choose(repo)
		if err == nil || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), "turn devcontainer off") {
			t.Fatalf("error %v", err)
		}
		// Opted in for every repository, one such file leaves its
		// repository on the image it would have without one, and says so.
		c, err := Toolchains{Default: "base:default", Devcontainer: true}.choose(repo)
		if err != nil || c.base != "base:default" || !strings.Contains(strings.Join(c.notes, ""), "symbolic link") {
			t.Fatalf("got %q, notes %q, %v", c.base, c.notes, err)
		}
	})
	t.Run("a file may not name codex-connector's own images", func(t *testing.T) {
		writeRepoFiles(t, repo, map[string]string{".devcontainer/devcontainer.json": `{"image": "codex-connector/devcontainer:0123456789abcdef"}`})
		defer os.Remove(file)
		if _, err := optedIn.choose(repo); err == nil || !strings.Contains(err.Error(), "one of codex-connector's own images") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("a named pipe in its place does not hang the call", func(t *testing.T) {
		if err := syscall.Mkfifo(file, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file)
		done := make(chan error, 1)
		go func() { _, err := optedIn.choose(repo); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "named pipe") {
				t.Fatalf("error %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reading the dev container file hangs on a named pipe")
		}
	})
	t.Run("without the opt-in the file is not read at all", func(t *testing.T) {
		if err := syscall.Mkfifo(file, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file)
		if c, err := tc.choose(repo); err != nil || c.base != "base:src" {
			t.Fatalf("got %q, %v", c.base, err)
		}
	})
}

// hostileBase builds an image on the Debian base from the Dockerfile lines
// given, under a name of its own, and returns it.
func hostileBase(t *testing.T, name string, lines ...string) string {
	t.Helper()
	base := "codex-connector/debian:bookworm"
	needImage(t, base)
	tag := "codex-connector-test/hostile:" + name
	err := images.BuildFiles(context.Background(), imagestest.Engine(t), tag, map[string][]byte{
		"Dockerfile": []byte("FROM " + base + "\n" + strings.Join(lines, "\n") + "\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// TestAnImageRunsNothingOfItsOwnInTheTask: a toolchain image's entrypoint,
// healthcheck, ONBUILD steps and volumes would each run something, or hide
// a mount, before the gate. None of them gets to.
func TestAnImageRunsNothingOfItsOwnInTheTask(t *testing.T) {
	entry := hostileBase(t, "entrypoint",
		`ENTRYPOINT ["/bin/sh", "-c", "echo the entrypoint ran > /tmp/entrypoint-ran; exec \"$@\"", "--"]`,
		`HEALTHCHECK --interval=1s CMD echo the healthcheck ran > /tmp/healthcheck-ran`)
	t.Run("the entrypoint and healthcheck do not run", func(t *testing.T) {
		// Control: run as the image says, the entrypoint does run.
		out, err := exec.Command("docker", "run", "--rm", entry, "cat", "/tmp/entrypoint-ran").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "the entrypoint ran") {
			t.Fatalf("control: %v %s", err, out)
		}
		h := newHarness(t, func(c *Config) { c.Toolchains = Toolchains{Default: entry} })
		task := h.startAndWait(t, Spec{Prompt: "sleep 3s; read /tmp/entrypoint-ran; read /tmp/healthcheck-ran; say done", WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
		log := readFile(t, h.LogPath(task.ID))
		if task.Status != store.Completed || !strings.Contains(log, "/tmp/entrypoint-ran: no such file") || !strings.Contains(log, "/tmp/healthcheck-ran: no such file") {
			t.Fatalf("status %s (%s), log:\n%s", task.Status, task.Error, log)
		}
	})
	for name, tt := range map[string]struct{ line, says string }{
		"ONBUILD steps":                     {"ONBUILD RUN echo onbuild ran", "has ONBUILD steps"},
		"a volume over the state directory": {"VOLUME /codex-connector/out", "declares a volume at /codex-connector/out"},
	} {
		t.Run("an image with "+name+" is refused", func(t *testing.T) {
			img := hostileBase(t, strings.ReplaceAll(name, " ", "-"), tt.line)
			h := newHarness(t, func(c *Config) { c.Toolchains = Toolchains{Default: img} })
			task := h.startAndWait(t, Spec{Prompt: "say done", WorkingDirectory: newRepo(t), Sandbox: WorkspaceWrite})
			if task.Status != store.Failed || !strings.Contains(task.Error, tt.says) {
				t.Fatalf("status %s, error %q", task.Status, task.Error)
			}
		})
	}
}

// TestAnImageCannotSeedTheCaches: an image with files where a cache volume
// goes would, by the engine's copy-up, fill a new volume with them (and
// give it the image's owner); the user's later tasks would use them.
func TestAnImageCannotSeedTheCaches(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs tasks as a user of its own: run it as root")
	}
	seeded := hostileBase(t, "seeded-cache", "RUN mkdir -p "+cacheMount+"/go && echo planted > "+cacheMount+"/go/planted && chmod -R 755 "+cacheMount)
	// A user of its own, so that its cache volumes are new.
	const uid = 4321
	repo := newRepo(t)
	if err := filepath.Walk(repo, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Lchown(p, uid, uid)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Control: the file is in the image where the volume goes.
	if out, err := exec.Command("docker", "run", "--rm", seeded, "cat", cacheMount+"/go/planted").CombinedOutput(); err != nil || !strings.Contains(string(out), "planted") {
		t.Fatalf("control: %v %s", err, out)
	}
	h := newHarness(t, func(c *Config) {
		c.Toolchains = Toolchains{Default: seeded}
		c.Caches = []string{"go"}
	})
	task := h.startAndWait(t, Spec{Prompt: "read " + cacheMount + "/go/planted; write " + cacheMount + "/go/mine ok; say done", WorkingDirectory: repo, Sandbox: WorkspaceWrite})
	log := readFile(t, h.LogPath(task.ID))
	if task.Status != store.Completed || !strings.Contains(log, cacheMount+"/go/planted: no such file") {
		t.Fatalf("status %s (%s), log:\n%s", task.Status, task.Error, log)
	}
	vol := CacheVolume("go", cacheDomain(task))
	out, err := exec.Command("docker", "run", "--rm", "-v", vol+":/v", "codex-connector/debian:bookworm", "sh", "-c", "ls -A /v; stat -c '%u %a' /v").CombinedOutput()
	if err != nil || strings.Contains(string(out), "planted") || !strings.Contains(string(out), "mine") || !strings.Contains(string(out), fmt.Sprintf("%d 700", uid)) {
		t.Fatalf("the cache volume after the task: %v\n%s", err, out)
	}
}
