package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	dockerbe "github.com/codex-connector/codex-connector/backend/docker"

	"github.com/codex-connector/codex-connector/images"
	"github.com/codex-connector/codex-connector/runner"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// checkImages prints which image each configured repository's tasks run
// on, and whether it is built. Nothing here fails the check: an image not
// built yet is made at the first task.
func checkImages(ctx context.Context, w io.Writer, cfg config, docker *client.Client, cimg image.InspectResponse) {
	tc := cfg.Toolchains
	describe := func(what string, c runner.ImageChoice, err error) {
		switch {
		case err != nil:
			fmt.Fprintf(w, "images: %s: %v\n", what, err)
			return
		case c.Build:
			fmt.Fprintf(w, "images: %s → built from %s, then Codex put onto it (at each task; the engine's build cache keeps it quick)\n", what, c.Source)
		case c.Base == "":
			fmt.Fprintf(w, "images: %s → %s (%s)\n", what, cfg.Image, c.Source)
		default:
			ti, built, err := images.Planned(ctx, docker, c.Base, cimg)
			switch {
			case err != nil:
				fmt.Fprintf(w, "images: %s → %s (%s): %v\n", what, c.Base, c.Source, err)
			case built:
				fmt.Fprintf(w, "images: %s → %s (%s), with Codex: %s, built", what, c.Base, c.Source, ti.Ref)
				if len(ti.Lacks) > 0 {
					fmt.Fprintf(w, "; it lacks %s", strings.Join(ti.Lacks, " and "))
				}
				fmt.Fprintln(w)
			default:
				fmt.Fprintf(w, "images: %s → %s (%s), with Codex: %s, not built yet — the first task makes it (seconds; Codex is copied, nothing downloaded)\n", what, c.Base, c.Source, ti.Ref)
			}
		}
		for _, n := range c.Notes {
			fmt.Fprintf(w, "images: note: %s\n", n)
		}
	}
	other := "repositories no entry names"
	if len(tc.Rules) == 0 {
		other = "every repository"
	}
	// What a repository no rule names gets, devcontainer aside.
	def := runner.ImageChoice{Base: tc.Default, Source: "config.json images.default"}
	if tc.Default == "" {
		def.Source = "the Codex image alone: no toolchain image configured, see \"Your toolchain in tasks\" in the README"
	}
	describe(other, def, nil)
	if tc.Devcontainer {
		fmt.Fprintln(w, "images: a repository with a dev container file that names an image runs on that image instead (devcontainer: true)")
	}
	for _, rule := range tc.Rules {
		if fi, err := os.Stat(filepath.Join(rule.Path, ".git")); err == nil && (fi.IsDir() || fi.Mode().IsRegular()) {
			c, err := tc.Choose(rule.Path)
			describe(rule.Path, c, err)
			continue
		}
		what := "repositories under " + rule.Path
		if strings.ContainsAny(rule.Path, "*?[") {
			what = "repositories matching " + rule.Path
		}
		c := runner.ImageChoice{Base: rule.Image, Source: "config.json images.repos entry " + rule.Path}
		if rule.Image == "" {
			c = def
		}
		describe(what, c, nil)
		switch rule.Devcontainer {
		case runner.DevcontainerImage:
			fmt.Fprintf(w, "images: %s: or the image their dev container file names\n", what)
		case runner.DevcontainerBuild:
			fmt.Fprintf(w, "images: %s: or the image their committed dev container file names or builds (its RUN steps with %s)\n", what,
				map[bool]string{false: "no network", true: "the engine's default network (buildNetwork)"}[rule.BuildNetwork])
		}
	}
	if len(cfg.Caches) == 0 {
		fmt.Fprintln(w, "caches: none (caches: [] in config.json)")
		return
	}
	fmt.Fprintf(w, "caches: %s, for tasks at workspace-write and above, kept per repository and sandbox level (one user's tasks in one repository at one level share them, nothing else does) in volumes codex-connector-cache-UID-NAME-DOMAIN; `codex-connector caches` lists them\n",
		strings.Join(cfg.Caches, ", "))
}

// caches lists the cache volumes, or removes them: the caller's own, or,
// for root, every user's.
func caches(docker *client.Client, args []string) error {
	if len(args) > 1 || len(args) == 1 && args[0] != "remove" {
		return errors.New("usage: codex-connector caches [remove]")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	uid := strconv.Itoa(os.Geteuid())
	if uid == "0" {
		uid = "" // root runs tasks as every repository's owner
	}
	be := dockerbe.New(docker)
	vols, err := runner.CacheVolumes(ctx, be, uid)
	if err != nil {
		return err
	}
	if len(vols) == 0 {
		fmt.Println("no cache volumes")
		return nil
	}
	if len(args) == 0 {
		sizes := map[string]int64{}
		if du, err := docker.DiskUsage(ctx, types.DiskUsageOptions{Types: []types.DiskUsageObject{types.VolumeObject}}); err == nil {
			for _, v := range du.Volumes {
				if v.UsageData != nil {
					sizes[v.Name] = v.UsageData.Size
				}
			}
		}
		for _, v := range vols {
			size := "size unknown"
			if n, ok := sizes[v.Name]; ok && n >= 0 {
				size = fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
			}
			domain := "(made before caches were kept per repository: remove it)"
			if repo := v.Labels[runner.LabelCacheRepo]; repo != "" {
				domain = "for " + repo + " at " + v.Labels[runner.LabelCacheLevel]
			}
			fmt.Printf("%s\tcache %s of user %s %s\t%s\n", v.Name, v.Labels[runner.LabelCache], v.Labels[runner.LabelCacheUser], domain, size)
		}
		fmt.Println("remove them with `codex-connector caches remove`; the next task makes them anew")
		return nil
	}
	var errs []error
	for _, v := range vols {
		if err := be.RemoveVolume(ctx, v.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Printf("removed %s\n", v.Name)
	}
	return errors.Join(errs...)
}
