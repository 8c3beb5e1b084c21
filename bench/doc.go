// Package bench holds the end-to-end benchmarks of `make bench`: the real
// codex-connector binary, built static as `make build` builds it, driven
// over stdio by the official MCP Go SDK, on the real Docker engine, each
// side by side with the reference it is compared with. Every benchmark
// records its rows with bench/benchtab; bench/report prints the table.
// README.md says what each row measures.
package bench
