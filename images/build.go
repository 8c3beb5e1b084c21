package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/build"
)

type builder interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
}

// BuildFiles builds an image tagged tag from a build context held in memory
// (file name → content, with a "Dockerfile"). Helper images are small, so an
// in-memory context is simpler than a directory on disk.
func BuildFiles(ctx context.Context, engine builder, tag string, files map[string][]byte, mode map[string]int64) error {
	buf, err := tarFiles(files, mode)
	if err != nil {
		return err
	}
	return buildImage(ctx, engine, tag, buf, build.ImageBuildOptions{Tags: []string{tag}}, io.Discard)
}

// ContextBuild is how BuildContext builds: the Dockerfile inside the
// context, its build arguments and target, the network its RUN steps get
// ("none" keeps them off every network; "" is the engine's default, which
// reaches the host's services and beyond) and the labels the image gets.
type ContextBuild struct {
	Dockerfile string
	Args       map[string]*string
	Target     string
	Network    string
	Labels     map[string]string
}

// BuildContext builds an image tagged tag from a build context the caller
// made (a tar stream).
func BuildContext(ctx context.Context, engine builder, tag string, buildContext io.Reader, b ContextBuild) error {
	return buildImage(ctx, engine, tag, buildContext, build.ImageBuildOptions{
		Tags: []string{tag}, Dockerfile: b.Dockerfile, BuildArgs: b.Args, Target: b.Target,
		NetworkMode: b.Network, Labels: b.Labels}, io.Discard)
}

// buildImage runs one build, named name in errors, copies its progress
// to out, and returns the error the engine reports, if any. Intermediate
// containers always go.
func buildImage(ctx context.Context, engine builder, name string, buildContext io.Reader, opts build.ImageBuildOptions, out io.Writer) error {
	opts.Remove, opts.ForceRemove = true, true
	resp, err := engine.ImageBuild(ctx, buildContext, opts)
	if err != nil {
		return fmt.Errorf("build image %s: %w", name, err)
	}
	defer resp.Body.Close()
	return readBuildStream(name, io.TeeReader(resp.Body, out))
}

// tarFiles makes a build context of files (name → content), mode 0644
// unless mode says otherwise.
func tarFiles(files map[string][]byte, mode map[string]int64) (*bytes.Buffer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m := mode[name]
		if m == 0 {
			m = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: m, Size: int64(len(files[name]))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(files[name]); err != nil {
			return nil, err
		}
	}
	return &buf, tw.Close()
}

// readBuildStream drains the engine's build progress and returns the error
// it reports, if any: a failed build still answers 200 and says so in-stream.
func readBuildStream(tag string, r io.Reader) error {
	dec := json.NewDecoder(r)
	var lastOutput string
	for {
		var msg struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("build image %s: read progress: %w", tag, err)
		}
		if msg.Error != "" {
			if strings.TrimSpace(lastOutput) == "" {
				return fmt.Errorf("build image %s: %s", tag, msg.Error)
			}
			return fmt.Errorf("build image %s: %s (last output: %s)", tag, msg.Error, strings.TrimSpace(lastOutput))
		}
		if msg.Stream != "" {
			lastOutput = msg.Stream
		}
	}
}
