# zocket.h - build and test. Everything lands in build/.
#   make          build tests, examples and benchmarks
#   make test     check the amalgamation, build, run every test
#   make run      build and start the chat example (http://127.0.0.1:8080/)
#   make fuzz     run every fuzzer for FUZZ_SECONDS (default 60) or FUZZ_RUNS inputs each
#   make bench    build and run the benchmarks
#   make amalgamate   regenerate zocket.h from src/

CC      ?= cc
CLANG   ?= clang
PYTHON  ?= python3
BUILD   := build
WARN    := -Wall -Wextra -Werror -pedantic -Wundef -Wshadow
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TESTCFLAGS  := -std=c99 $(WARN) -g -O1 $(SAN) -I.
BENCHCFLAGS := -std=c99 $(WARN) -O2 -march=native -I.
FUZZCFLAGS  := -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I.
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=

SRC      := $(wildcard src/*.h src/*.c)
TESTS    := $(patsubst tests/%.c,$(BUILD)/%,$(wildcard tests/test_*.c))
CLANG_TESTS := $(patsubst tests/%.c,$(BUILD)/clang/%,$(wildcard tests/test_*.c))
FUZZERS  := $(patsubst tests/fuzz/%.c,$(BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))
BENCHES  := $(patsubst bench/%.c,$(BUILD)/%,$(wildcard bench/bench_*.c))
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/%,$(wildcard examples/*.c))

.PHONY: all test run fuzz fuzzers bench amalgamate clean clang-tests kqueue-tests valgrind-tests tsan-tests
all: $(TESTS) $(BENCHES) $(EXAMPLES) $(BUILD)/interop_client $(BUILD)/restart_test $(BUILD)/herd_test $(BUILD)/loadgen $(BUILD)/slowloris

zocket.h: $(SRC) tools/amalgamate.py
	$(PYTHON) tools/amalgamate.py

amalgamate: zocket.h

$(BUILD):
	mkdir -p $@

$(BUILD)/test_%: tests/test_%.c tests/test.h tests/ws_record.h zocket.h | $(BUILD)
	$(CC) $(TESTCFLAGS) $< -o $@

# the same tests built by clang: its UBSan sees what gcc's does not
$(BUILD)/clang/test_%: tests/test_%.c tests/test.h tests/ws_record.h zocket.h
	@mkdir -p $(BUILD)/clang
	$(CLANG) $(TESTCFLAGS) $< -o $@

clang-tests: $(CLANG_TESTS)

# rooms across two nodes through real Redis and NATS servers, which the test
# starts itself (tests/broker_harness.h); built by the rules above
$(BUILD)/test_cluster $(BUILD)/clang/test_cluster $(BUILD)/plain/test_cluster: tests/broker_harness.h

# the loop and connection tests again on the kqueue backend, over our own
# kqueue-on-epoll shim (Debian 12 has no libkqueue)
KQUEUE_TESTS := $(patsubst tests/%.c,$(BUILD)/kqueue/%,$(wildcard tests/test_loop.c tests/test_net.c))
$(BUILD)/kqueue/test_%: tests/test_%.c tests/test.h tests/kqueue/kqueue_shim.c tests/kqueue/sys/event.h zocket.h
	@mkdir -p $(BUILD)/kqueue
	$(CC) $(TESTCFLAGS) -DZK_HAVE_KQUEUE=1 -Itests/kqueue $< tests/kqueue/kqueue_shim.c -o $@

kqueue-tests: $(KQUEUE_TESTS)

# the socket tests without sanitizers, for valgrind memcheck
VALGRIND_TESTS := $(patsubst tests/%.c,$(BUILD)/plain/%,$(wildcard tests/test_loop.c tests/test_net.c tests/test_cluster.c))
$(BUILD)/plain/test_%: tests/test_%.c tests/test.h zocket.h
	@mkdir -p $(BUILD)/plain
	$(CC) -std=c99 $(WARN) -g -O1 -I. $< -o $@

valgrind-tests: $(VALGRIND_TESTS)

# the tests that post from threads (zk_loop_post), under ThreadSanitizer
$(BUILD)/tsan/test_%: tests/test_%.c tests/test.h zocket.h
	@mkdir -p $(BUILD)/tsan
	$(CLANG) -std=c99 $(WARN) -g -O1 -fsanitize=thread -I. $< -o $@

# and the loop's wakeup on the kqueue backend (over the shim)
$(BUILD)/tsan/kqueue/test_loop: tests/test_loop.c tests/test.h tests/kqueue/kqueue_shim.c tests/kqueue/sys/event.h zocket.h
	@mkdir -p $(BUILD)/tsan/kqueue
	$(CLANG) -std=c99 $(WARN) -g -O1 -fsanitize=thread -DZK_HAVE_KQUEUE=1 -Itests/kqueue -I. $< tests/kqueue/kqueue_shim.c -o $@

tsan-tests: $(BUILD)/tsan/test_loop $(BUILD)/tsan/test_app $(BUILD)/tsan/kqueue/test_loop

$(BUILD)/interop_client: tests/interop/interop_client.c zocket.h | $(BUILD)
	$(CC) $(TESTCFLAGS) $< -o $@

# zk_client through a killed and restarted build/chat, and 1000 of them
# through restarts (tests/interop/run.sh drives both)
$(BUILD)/restart_test: tests/interop/restart_test.c zocket.h | $(BUILD)
	$(CC) $(TESTCFLAGS) $< -o $@

$(BUILD)/herd_test: tests/interop/herd_test.c zocket.h | $(BUILD)
	$(CC) $(TESTCFLAGS) $< -o $@

$(BUILD)/loadgen: bench/loadgen.c zocket.h | $(BUILD)
	$(CC) $(BENCHCFLAGS) $< -o $@

$(BUILD)/bench_%: bench/bench_%.c zocket.h | $(BUILD)
	$(CC) $(BENCHCFLAGS) $< -o $@

# the app the RPC and fan-out benchmark loads (bench/run_fanout.sh); runs
# until killed, so not a bench_* program
$(BUILD)/app_server: bench/app_server.c zocket.h | $(BUILD)
	$(CC) $(BENCHCFLAGS) $< -o $@

# one zk_client over TCP against build/app_server (bench/run_client.sh);
# needs a server, so not a bench_* program
$(BUILD)/client_load: bench/client_load.c zocket.h | $(BUILD)
	$(CC) $(BENCHCFLAGS) $< -o $@

# cross-node room fan-out through Redis and NATS (bench/run_cluster.sh);
# needs broker servers, so not a bench_* program
$(BUILD)/cluster_bench: bench/cluster_bench.c zocket.h | $(BUILD)
	$(CC) $(BENCHCFLAGS) $< -o $@

# slow and silent peers over real sockets against a forked server: each is
# closed at its deadline, and a normal client's round trip with and without
# them (tests/interop/run.sh runs it; -O2: it also reports figures)
$(BUILD)/slowloris: tests/interop/slowloris.c zocket.h | $(BUILD)
	$(CC) $(BENCHCFLAGS) $< -o $@

# thousands of clients chatting for minutes (bench/run_soak.sh)
$(BUILD)/soak: bench/soak.c zocket.h | $(BUILD)
	$(CC) $(BENCHCFLAGS) $< -o $@

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c zocket.h | $(BUILD)
	$(CLANG) $(FUZZCFLAGS) $< -o $@

# the chat example serves its page from the binary: tools/embed.py turns
# examples/chat/ into a header (an explicit rule: it wins over the pattern below)
CHAT_ASSETS := $(sort $(wildcard examples/chat/*.html examples/chat/*.js examples/chat/*.css))

$(BUILD)/chat_assets.h: $(CHAT_ASSETS) tools/embed.py | $(BUILD)
	$(PYTHON) tools/embed.py --name chat_assets -o $@ $(CHAT_ASSETS)

$(BUILD)/chat: examples/chat.c $(BUILD)/chat_assets.h zocket.h | $(BUILD)
	$(CC) -std=c99 $(WARN) -g -O2 -pthread -I. -I$(BUILD) $< -o $@

# zkcat reads stdin in a thread
$(BUILD)/zkcat: examples/zkcat.c zocket.h | $(BUILD)
	$(CC) -std=c99 $(WARN) -g -O2 -pthread -I. $< -o $@

$(BUILD)/%: examples/%.c zocket.h | $(BUILD)
	$(CC) -std=c99 $(WARN) -g -O2 -I. $< -o $@

test:
	@bash tests/run.sh

run: $(BUILD)/chat
	./$(BUILD)/chat

fuzzers: $(FUZZERS)

# FUZZ_SECONDS per fuzzer, or FUZZ_RUNS inputs each when set (10000000 is
# what bench/RESULTS.md records); new inputs go to build/corpus/<name>/ and
# a crash to build/crash-<name>-*
fuzz: fuzzers
	@set -e; for f in $(FUZZERS); do \
	  name=$${f#$(BUILD)/fuzz_}; mkdir -p $(BUILD)/corpus/$$name; \
	  if [ -n "$(FUZZ_RUNS)" ]; then limit=-runs=$(FUZZ_RUNS); else limit=-max_total_time=$(FUZZ_SECONDS); fi; \
	  echo "== $$f ($$limit)"; \
	  $$f $$limit -print_final_stats=1 -artifact_prefix=$(BUILD)/crash-$$name- \
	    $(BUILD)/corpus/$$name tests/fuzz/corpus/$$name; \
	done

bench: $(BENCHES) $(BUILD)/loadgen
	@for b in $(BENCHES); do ./$$b; done
	@echo "echo servers side by side (about 5 minutes): bash bench/run_echo.sh"
	@echo "RPC and room fan-out beside Bun (about 2 minutes): bash bench/run_fanout.sh"

clean:
	rm -rf $(BUILD)
