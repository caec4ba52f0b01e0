// bench/llamacpp/bench.mjs — llama.cpp's pp / tg speed and peak RSS on this machine, the way
// llama-bench measures them, with node-llama-cpp's prebuilt CPU binaries (never built from source).
//
//   node bench.mjs MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 3] [--json] [--node-api]
//
// Default engine: llama-bench's own loop, run through koffi (an FFI with prebuilt binaries) on the
// prebuilt libllama / libggml that @node-llama-cpp/linux-x64 ships: the best ggml CPU variant for this
// CPU is loaded (ggml_backend_load_all_from_path), a persistent ggml threadpool of -t threads is
// attached to the context (as llama-bench does), and
//   pp = one llama_decode of p random tokens (BOS first), batch 2048 / ubatch 512 so one batch when
//        p <= 512, logits of the last token only, from an empty KV cache;
//   tg = n llama_decode calls of one random token each, from an empty KV cache (llama-bench feeds
//        random tokens and does not sample: the logits are computed, sampling costs ~0.1 ms).
// Context of p + n tokens, KV cache f16, flash attention "auto", mmap (load mode auto): llama-bench's
// defaults. One warm-up run of each test, then r timed runs: t/s per run, mean ± sample stddev (as
// llama-bench) and the median.
//
// --node-api: node-llama-cpp's own sequence API instead (pp = evaluate p tokens and sample one; tg =
// n greedy steps). node-llama-cpp attaches no threadpool, so every llama_decode starts ggml threads
// afresh; on this 2-core VM that costs ~14 ms per decode with -t 2, which tg feels in full. Kept to
// show that difference, not for the comparison.
//
// Peak RSS = VmHWM of this process at the end; the node runtime's share (VmHWM before the model
// loads) is printed beside it.
import {createRequire} from "node:module";
import {closeSync, mkdtempSync, readFileSync, readdirSync, rmSync} from "node:fs";
import {tmpdir} from "node:os";
import {dirname, join} from "node:path";
import {performance} from "node:perf_hooks";

function usage(code) {
    (code ? console.error : console.log)(
        "usage: node bench.mjs MODEL.gguf [-p N_PROMPT=512] [-n N_GEN=128] [-t THREADS=2] [-r REPS=3] [--json] [--node-api]");
    process.exit(code);
}

function parseArgs(argv) {
    const o = {model: null, p: 512, n: 128, t: 2, r: 3, json: false, nodeApi: false};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "-h" || a === "--help") usage(0);
        else if (a === "--json") o.json = true;
        else if (a === "--node-api") o.nodeApi = true;
        else if (["-p", "-n", "-t", "-r"].includes(a)) {
            const v = Number(argv[++i]);
            if (!Number.isInteger(v) || v < 0 || (a !== "-p" && a !== "-n" && v < 1)) {
                console.error(`bench.mjs: bad value for ${a}: ${argv[i]}`);
                usage(2);
            }
            o[a.slice(1)] = v;
        } else if (!a.startsWith("-") && !o.model) o.model = a;
        else {
            console.error(`bench.mjs: unknown argument ${a}`);
            usage(2);
        }
    }
    if (!o.model) usage(2);
    return o;
}

function vmHWM() { // peak resident set of this process, MiB
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
}

function stats(xs) {
    const n = xs.length, mean = xs.reduce((a, b) => a + b, 0) / n;
    const sd = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
    const s = [...xs].sort((a, b) => a - b);
    const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    return {mean, sd, median};
}

// Deterministic pseudo-random token ids (llama-bench uses std::rand() % n_vocab), BOS first if wanted.
function makeRng(seed) {
    let s = seed >>> 0;
    return (nVocab) => {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        return (s >>> 8) % nVocab;
    };
}

// The ggml CPU variant this process loaded, from the loader's log line or the memory map.
function cpuVariant(log) {
    const m = /loaded CPU backend from (\S+)/.exec(log) ??
              /\s(\/\S*libggml-cpu[^\s/]*\.so)$/m.exec(readFileSync("/proc/self/maps", "utf8"));
    if (!m) return {variant: "not reported", lib: null};
    return {variant: m[1].replace(/^.*libggml-cpu-?/, "").replace(/\.so$/, "") || "default", lib: m[1]};
}

const require = createRequire(import.meta.url);

// ---- default engine: llama-bench's loop over libllama through koffi ----

// Struct layouts of llama.cpp v0.4.0 (commit 80fb11ac, the one node-llama-cpp 3.21.1 ships; the lock
// file pins it). Checked against the library's own defaults below, so a different version fails loudly.
async function ffiEngine(o) {
    const koffi = (await import("koffi")).default;
    const pkgDir = dirname(dirname(require.resolve("@node-llama-cpp/linux-x64")));
    const bins = join(pkgDir, "bins", "linux-x64");
    const files = readdirSync(bins);
    const lib = (re) => {
        const f = files.find((x) => re.test(x));
        if (!f) throw new Error(`no ${re} in ${bins}`);
        return join(bins, f);
    };
    const meta = JSON.parse(readFileSync(join(bins, "_nlcBuildMetadata.json"), "utf8"));

    // llama.cpp logs to stderr by default: send fd 2 to a file while it works, read it afterwards.
    const libc = koffi.load("libc.so.6");
    const dup = libc.func("int dup(int)"), dup2 = libc.func("int dup2(int, int)");
    const creat = libc.func("int creat(const char *, uint32_t)"), cclose = libc.func("int close(int)");
    const logDir = mkdtempSync(join(tmpdir(), "llamacpp-bench-"));
    const logPath = join(logDir, "llama.log");
    const savedErr = dup(2), logFd = creat(logPath, 0o600);
    dup2(logFd, 2);
    cclose(logFd);
    const restoreStderr = () => {
        if (savedErr >= 0) { dup2(savedErr, 2); cclose(savedErr); }
    };

    try {
        const ggmlBase = koffi.load(lib(/^libggml-base\.so$/));
        const ggml = koffi.load(lib(/^libggml(\.v[\d.]+)?\.so$/));
        const llama = koffi.load(lib(/^libllama(\.v[\d.]+)?\.so$/));

        const ModelParams = koffi.struct("llama_model_params", {
            devices: "void *", tensor_buft_overrides: "void *", n_gpu_layers: "int32_t", split_mode: "int",
            load_mode: "int", lazy_mode: "int", main_gpu: "int32_t", tensor_split: "void *",
            progress_callback: "void *", progress_callback_user_data: "void *", kv_overrides: "void *",
            vocab_only: "bool", check_tensors: "bool", use_extra_bufts: "bool", no_host: "bool",
            no_alloc: "bool", load_mtp: "bool",
        });
        const CtxParams = koffi.struct("llama_context_params", {
            n_ctx: "uint32_t", n_batch: "uint32_t", n_ubatch: "uint32_t", n_seq_max: "uint32_t",
            n_rs_seq: "uint32_t", n_outputs_max: "uint32_t", n_outputs_max_per_seq: "uint32_t",
            n_threads: "int32_t", n_threads_batch: "int32_t",
            ctx_type: "int", rope_scaling_type: "int", pooling_type: "int", attention_type: "int",
            flash_attn_type: "int",
            rope_freq_base: "float", rope_freq_scale: "float", yarn_ext_factor: "float",
            yarn_attn_factor: "float", yarn_beta_fast: "float", yarn_beta_slow: "float",
            yarn_orig_ctx: "uint32_t", defrag_thold: "float",
            cb_eval: "void *", cb_eval_user_data: "void *", type_k: "int", type_v: "int",
            abort_callback: "void *", abort_callback_data: "void *",
            embeddings: "bool", offload_kqv: "bool", no_perf: "bool", op_offload: "bool", swa_full: "bool",
            kv_unified: "bool", samplers: "void *", n_samplers: "size_t", ctx_other: "void *",
        });
        const Batch = koffi.struct("llama_batch", {
            n_tokens: "int32_t", token: "void *", embd: "void *", pos: "void *", n_seq_id: "void *",
            seq_id: "void *", logits: "void *",
        });
        const TpParams = koffi.struct("ggml_threadpool_params", {
            cpumask: koffi.array("bool", 512), n_threads: "int", prio: "int", poll: "uint32_t",
            strict_cpu: "bool", paused: "bool",
        });

        const f = {
            load_all: ggml.func("void ggml_backend_load_all_from_path(const char *)"),
            dev_by_type: ggml.func("void *ggml_backend_dev_by_type(int)"),
            dev_reg: ggmlBase.func("void *ggml_backend_dev_backend_reg(void *)"),
            proc: ggmlBase.func("void *ggml_backend_reg_get_proc_address(void *, const char *)"),
            tp_defaults: ggmlBase.func("ggml_threadpool_params ggml_threadpool_params_default(int)"),
            backend_init: llama.func("void llama_backend_init()"),
            sysinfo: llama.func("const char *llama_print_system_info()"),
            model_defaults: llama.func("llama_model_params llama_model_default_params()"),
            load_model: llama.func("void *llama_model_load_from_file(const char *, llama_model_params)"),
            ctx_defaults: llama.func("llama_context_params llama_context_default_params()"),
            init_ctx: llama.func("void *llama_init_from_model(void *, llama_context_params)"),
            get_vocab: llama.func("void *llama_model_get_vocab(void *)"),
            n_vocab: llama.func("int32_t llama_vocab_n_tokens(void *)"),
            bos: llama.func("int32_t llama_vocab_bos(void *)"),
            add_bos: llama.func("bool llama_vocab_get_add_bos(void *)"),
            attach_tp: llama.func("void llama_attach_threadpool(void *, void *, void *)"),
            set_threads: llama.func("void llama_set_n_threads(void *, int32_t, int32_t)"),
            get_memory: llama.func("void *llama_get_memory(void *)"),
            memory_clear: llama.func("void llama_memory_clear(void *, bool)"),
            batch_one: llama.func("llama_batch llama_batch_get_one(void *, int32_t)"),
            decode: llama.func("int32_t llama_decode(void *, llama_batch)"),
            sync: llama.func("void llama_synchronize(void *)"),
            n_ctx: llama.func("uint32_t llama_n_ctx(void *)"),
            free_ctx: llama.func("void llama_free(void *)"),
            free_model: llama.func("void llama_model_free(void *)"),
        };

        f.load_all(bins);
        f.backend_init();
        const hwmBase = vmHWM();

        const mp = f.model_defaults();
        if (mp.n_gpu_layers !== -1 || mp.load_mode !== -1 || mp.lazy_mode !== 1 || mp.use_extra_bufts !== true || mp.load_mtp !== false)
            throw new Error("llama_model_params layout differs from the llama.cpp version bench.mjs knows");
        mp.n_gpu_layers = 0; // CPU only (this package has no GPU backend anyway)
        const model = f.load_model(o.model, mp);
        if (!model) throw new Error(`llama.cpp could not load ${o.model}`);

        const cp = f.ctx_defaults();
        if (cp.n_ctx !== 512 || cp.n_batch !== 2048 || cp.n_ubatch !== 512 || cp.n_seq_max !== 1 ||
            cp.flash_attn_type !== -1 || cp.type_k !== 1 || cp.type_v !== 1 || cp.yarn_ext_factor !== -1 ||
            cp.offload_kqv !== true || cp.swa_full !== true || cp.kv_unified !== false || cp.n_samplers !== 0)
            throw new Error("llama_context_params layout differs from the llama.cpp version bench.mjs knows");
        Object.assign(cp, {n_ctx: o.p + o.n, n_threads: o.t, n_threads_batch: o.t, swa_full: false});
        if (o.p > cp.n_batch) cp.n_batch = o.p; // one batch, as asked
        const ctx = f.init_ctx(model, cp);
        if (!ctx) throw new Error("llama.cpp could not create a context");

        // a persistent threadpool on the CPU backend's own entry points, as llama-bench makes it
        const reg = f.dev_reg(f.dev_by_type(0 /* GGML_BACKEND_DEVICE_TYPE_CPU */));
        const tpNewPtr = f.proc(reg, "ggml_threadpool_new"), tpFreePtr = f.proc(reg, "ggml_threadpool_free");
        if (!tpNewPtr || !tpFreePtr) throw new Error("the CPU backend exports no ggml_threadpool_new");
        const tpNew = koffi.decode(tpNewPtr, koffi.proto("void *tp_new_fn(ggml_threadpool_params *)"));
        const tpFree = koffi.decode(tpFreePtr, koffi.proto("void tp_free_fn(void *)"));
        const tp = tpNew(f.tp_defaults(o.t));
        if (!tp) throw new Error("ggml_threadpool_new failed");
        f.attach_tp(ctx, tp, null);
        f.set_threads(ctx, o.t, o.t);

        const vocab = f.get_vocab(model), nVocab = f.n_vocab(vocab);
        const bos = f.add_bos(vocab) ? f.bos(vocab) : null;
        const mem = f.get_memory(ctx);
        const nTok = Math.max(o.p, 1);
        const tokPtr = koffi.alloc("int32_t", nTok); // stable memory: the batch points into it
        const toks = new Int32Array(koffi.view(tokPtr, 4 * nTok));
        const rng = makeRng(1);
        const decode = (n) => {
            const rc = f.decode(ctx, f.batch_one(tokPtr, n));
            if (rc !== 0) throw new Error(`llama_decode returned ${rc}`);
        };

        const pp = () => {
            for (let i = 0; i < o.p; i++) toks[i] = rng(nVocab);
            if (bos != null) toks[0] = bos;
            f.memory_clear(mem, false);
            const t0 = performance.now();
            decode(o.p);
            f.sync(ctx);
            return o.p / ((performance.now() - t0) / 1e3);
        };
        const tg = () => {
            f.memory_clear(mem, false);
            toks[0] = bos ?? rng(nVocab);
            const t0 = performance.now();
            for (let i = 0; i < o.n; i++) {
                decode(1);
                f.sync(ctx);
                toks[0] = rng(nVocab);
            }
            return o.n / ((performance.now() - t0) / 1e3);
        };
        const results = runTests(o, pp, tg);

        const context = f.n_ctx(ctx);
        f.free_ctx(ctx);
        tpFree(tp);
        f.free_model(model);
        koffi.free(tokPtr);
        const hwm = vmHWM();
        restoreStderr();
        const log = readFileSync(logPath, "utf8");
        const fa = /flash_attn\s*=\s*(.*)$/m.exec(log);
        return {
            info: {
                llama_cpp: `${meta.buildOptions?.llamaCpp?.repo}@${meta.buildOptions?.llamaCpp?.release}`,
                engine: "llama-bench loop via koffi on the prebuilt libllama (persistent threadpool)",
                ...cpuVariantInfo(log),
                system_info: f.sysinfo().trim(),
                threads: o.t, context, batch: cp.n_batch, ubatch: cp.n_ubatch,
                flash_attn: fa ? fa[1].trim() : "auto",
                repacked: /CPU_REPACK model buffer size\s*=\s*([\d.]+ MiB)/.exec(log)?.[1] ?? "none",
                peak_rss_mib: hwm, node_baseline_rss_mib: hwmBase,
            },
            results,
        };
    } catch (e) {
        restoreStderr();
        try { process.stderr.write(readFileSync(logPath, "utf8").split("\n").slice(-30).join("\n") + "\n"); } catch {}
        throw e;
    } finally {
        rmSync(logDir, {recursive: true, force: true});
    }
}

function cpuVariantInfo(log) {
    const v = cpuVariant(log);
    return {cpu_variant: v.variant, cpu_backend_lib: v.lib};
}

// ---- --node-api: node-llama-cpp's own API ----

async function nodeApiEngine(o) {
    const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");
    const logs = [];
    const llama = await getLlama({
        gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
        maxThreads: 0, // no splitting of threads between contexts: the context uses -t threads
        logLevel: LlamaLogLevel.debug, logger: (level, message) => logs.push(message),
    });
    // log lines reach JS asynchronously: wait (up to 2 s) for the backend line, then quieten
    for (let i = 0; i < 200 && !logs.some((l) => l.includes("CPU backend")); i++) await new Promise((r) => setTimeout(r, 10));
    llama.logLevel = LlamaLogLevel.warn;
    const hwmBase = vmHWM();
    const model = await llama.loadModel({modelPath: o.model, gpuLayers: 0, useMmap: true});
    const ctx = await model.createContext({
        contextSize: Math.max(o.p + o.n, 16), batchSize: Math.max(o.p, 1), sequences: 1,
        threads: {ideal: o.t, min: o.t}, flashAttention: false, failedCreationRemedy: false,
    });
    const seq = ctx.getSequence();
    const nVocab = model.fileInsights?.vocabularySize ?? model.fileInfo?.metadata?.tokenizer?.ggml?.tokens?.length;
    if (!nVocab) throw new Error("cannot tell the vocabulary size");
    const bos = model.tokens.bos, rng = makeRng(1);
    const pp = async () => {
        const toks = Array.from({length: o.p}, () => rng(nVocab));
        if (bos != null && o.p) toks[0] = bos;
        await seq.clearHistory();
        const t0 = performance.now();
        const it = seq.evaluate(toks, {temperature: 0});
        const r = await it.next(); // the batch, then one token sampled from the last position
        const dt = (performance.now() - t0) / 1e3;
        await it.return();
        if (r.done) throw new Error("pp: no token came back");
        return o.p / dt;
    };
    const tg = async () => {
        await seq.clearHistory();
        const t0 = performance.now();
        const it = seq.evaluate([bos ?? rng(nVocab)], {temperature: 0});
        let steps = 0;
        for (; steps < o.n; steps++) if ((await it.next()).done) break;
        const dt = (performance.now() - t0) / 1e3;
        await it.return();
        if (steps !== o.n) throw new Error(`tg: generation stopped after ${steps} of ${o.n} tokens`);
        return o.n / dt;
    };
    const results = await runTestsAsync(o, pp, tg);
    const info = {
        llama_cpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
        engine: "node-llama-cpp sequence API (greedy; no threadpool attached)",
        ...cpuVariantInfo(logs.join("\n")),
        system_info: llama.systemInfo.trim(),
        threads: o.t, context: ctx.contextSize, batch: ctx.batchSize, flash_attn: "off",
    };
    await ctx.dispose();
    await model.dispose();
    info.peak_rss_mib = vmHWM();
    info.node_baseline_rss_mib = hwmBase;
    await llama.dispose();
    return {info, results};
}

function runTests(o, pp, tg) {
    const results = [];
    for (const [name, n, fn] of [[`pp${o.p}`, o.p, pp], [`tg${o.n}`, o.n, tg]]) {
        if (!n) continue;
        fn(); // warm-up
        const ts = [];
        for (let i = 0; i < o.r; i++) ts.push(fn());
        results.push({test: name, ...stats(ts), samples: ts});
    }
    return results;
}

async function runTestsAsync(o, pp, tg) {
    const results = [];
    for (const [name, n, fn] of [[`pp${o.p}`, o.p, pp], [`tg${o.n}`, o.n, tg]]) {
        if (!n) continue;
        await fn();
        const ts = [];
        for (let i = 0; i < o.r; i++) ts.push(await fn());
        results.push({test: name, ...stats(ts), samples: ts});
    }
    return results;
}

const o = parseArgs(process.argv.slice(2));
const {info, results} = o.nodeApi ? await nodeApiEngine(o) : await ffiEngine(o);
if (o.json) {
    console.log(JSON.stringify({model: o.model, ...info, results}, null, 1));
} else {
    console.log(`llama.cpp ${info.llama_cpp}, ggml CPU variant: ${info.cpu_variant}` +
                (info.cpu_backend_lib ? ` (${info.cpu_backend_lib})` : ""));
    console.log(`engine: ${info.engine}`);
    console.log(`system_info: ${info.system_info}`);
    console.log(`model ${o.model}, threads ${o.t}, context ${info.context}, batch ${info.batch}` +
                `, flash_attn ${info.flash_attn}` + (info.repacked ? `, repacked weights ${info.repacked}` : ""));
    console.log("| test | t/s (mean ± sd) | median | runs |");
    console.log("| --- | --- | --- | --- |");
    for (const r of results)
        console.log(`| ${r.test} | ${r.mean.toFixed(2)} ± ${r.sd.toFixed(2)} | ${r.median.toFixed(2)} | ` +
                    `${r.samples.map((x) => x.toFixed(1)).join(" ")} |`);
    console.log(`peak RSS (VmHWM): ${info.peak_rss_mib.toFixed(0)} MiB ` +
                `(node runtime before the model: ${info.node_baseline_rss_mib.toFixed(0)} MiB)`);
}
