/* cli/main.c — the `sparrow` binary: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: sparrow COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  serve     the OpenAI-compatible HTTP server (default 127.0.0.1:8080)\n"
            "  run       generate text from a prompt (streams to stdout)\n"
            "  inspect   print a GGUF file's metadata and tensor table\n"
            "  tokenize  print the token ids of a text (or --detok ids)\n"
            "  template  render a chat template with a JSON context\n"
            "  synth     write a random-weight GGUF in a real model's shape\n"
            "  pull      download a GGUF (URL or Hugging Face org/repo/file.gguf), resumable\n"
            "  bench     prompt-processing and generation speed (llama-bench's pp / tg)\n"
            "  devices   the OpenCL devices and the one --kernels opencl would use\n"
            "\n"
            "`sparrow COMMAND --help` for the options of one command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return sp_cli_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return sp_cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "template")) return sp_cli_template(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return sp_cli_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return sp_cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "synth")) return sp_cli_synth(argc - 1, argv + 1);
    if (!strcmp(cmd, "pull")) return sp_cli_pull(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return sp_cli_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "devices")) return sp_cli_devices(argc - 1, argv + 1);
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "sparrow: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
