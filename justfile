# The everyday commands. Each mirrors a plain cargo command from the README, so
# nothing here is needed to build, run or test the project.

# Run the main job: a 30-iteration Au8Cu4 random structure search on 2 workers.
run:
    cargo run --release -p agox-coord -- run examples/scripts/au8cu4_rss.toml --workers 2

# Run every test (what CI runs, minus the lint steps).
test:
    cargo test --workspace

# The pool (with the machine's own socket floor, measured in the same run), atoms,
# search and model benchmarks, each one JSON line.
bench:
    cargo run --release --example bench_pool -- --workers 2
    cargo run --release --example bench_atoms
    cargo run --release --example bench_search
    cargo run --release --example bench_models

# Exactly what CI runs.
ci:
    bash .ci/run
