/* busgate: an enforcement broker for Kafka, RabbitMQ and HTTP traffic. */
#include <stdio.h>
#include <string.h>

#include "adapters/amqp/amqp_adapter.h"
#include "adapters/kafka/kafka_adapter.h"
#include "broker/cli.h"
#include "broker/version.h"

/* The protocol adapters linked into this binary. */
static const bg_adapter_t *const bg_main__adapters[] = {&bg_kafka_adapter, &bg_amqp_adapter};
static const size_t bg_main__nadapters = sizeof bg_main__adapters / sizeof bg_main__adapters[0];

static void bg_main__usage(FILE *f)
{
    fprintf(f,
            "usage: busgate <command> [options]\n"
            "  run -c FILE              run the broker (also: busgate -c FILE)\n"
            "  check -c FILE            validate a configuration; exit 0 valid, 1 invalid, 2 usage\n"
            "  explain -c FILE --sub S [--groups a,b] --resource R --verb V [--json]\n"
            "                           show what the policy decides and which rule decides it\n"
            "  token mint --key PEM [--kid K] --sub S [--groups a,b] [--ttl SECONDS]\n"
            "             [--iss I] [--aud A]   sign a development token (tests only)\n"
            "  token inspect -c FILE [--] TOKEN   verify a token as busgate would (TOKEN -:\n"
            "                                   standard input); exit 0 valid, 1 rejected or\n"
            "                                   invalid configuration, 2 usage\n"
            "  audit tail [-c FILE] [--follow] [--session ID] [--sub S] [--json]\n"
            "             [--from kafka|file|spool]   print audit events, one line each\n"
            "  audit replay [-c FILE] [--json] [--from kafka|file|spool] SESSION\n"
            "                           a session's timeline, in order\n"
            "  version                  print the version\n"
            "  help [COMMAND]           this text (also: busgate COMMAND --help)\n");
}

/* Commands without arguments (version, help): anything after the command
 * word is bad usage, as for every other command, rather than ignored.
 * 0 when there is nothing, else 2 after naming the first extra word. */
static int bg_main__no_args(int argc, char **argv)
{
    if (argc <= 2)
        return 0;
    fprintf(stderr, "busgate: unexpected argument '%s'\nusage: busgate %s\n", argv[2], argv[1]);
    return 2;
}

static int bg_main__version(int argc, char **argv)
{
    if (bg_main__no_args(argc, argv) != 0)
        return 2;
    printf("busgate %s\n", BG_VERSION);
    return 0;
}

/* 1 when w is one of the commands the usage names. */
static int bg_main__is_command(const char *w)
{
    static const char *const commands[] = {"run",   "check",   "explain", "token",
                                           "audit", "version", "help"};
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        if (strcmp(w, commands[c]) == 0)
            return 1;
    return 0;
}

/* busgate help [COMMAND]: the usage, as "busgate COMMAND --help" gives it
 * (token answers its own, with the defaults of mint); an unknown COMMAND
 * is bad usage, as for "busgate COMMAND", and so is a word after COMMAND. */
static int bg_main__help(int argc, char **argv)
{
    int named = argc >= 3 && bg_main__is_command(argv[2]);
    if (argc >= 3 && !named && argv[2][0] != '-') {
        fprintf(stderr, "busgate help: unknown command '%s'\n", argv[2]);
        bg_main__usage(stderr);
        return 2;
    }
    if (bg_main__no_args(argc - named, argv + named) != 0)
        return 2;
    if (named && strcmp(argv[2], "token") == 0) {
        char *token_help[] = {argv[2], "--help", NULL};
        return bg_cli_token(2, token_help);
    }
    bg_main__usage(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "busgate: missing a command\n");
        bg_main__usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    /* "busgate CMD ... --help" (or -h right after CMD): the usage of every
     * command, as for "busgate --help". For every command but token, which
     * answers its own, with the defaults of mint. No option takes a value
     * that starts with "--help". version and help are here so that their
     * "--help" is answered rather than refused as an extra argument. */
    int with_help = (bg_main__is_command(cmd) && strcmp(cmd, "token") != 0) ||
                    strcmp(cmd, "--version") == 0 || strcmp(cmd, "--help") == 0 ||
                    strcmp(cmd, "-h") == 0;
    for (int i = 2; with_help && i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || (i == 2 && strcmp(argv[i], "-h") == 0)) {
            bg_main__usage(stdout);
            return 0;
        }
    }
    if (strcmp(cmd, "-c") == 0 || strcmp(cmd, "--config") == 0 ||
        strncmp(cmd, "--config=", 9) == 0)
        return bg_cli_run(argc, argv, bg_main__adapters, bg_main__nadapters);
    if (strcmp(cmd, "run") == 0)
        return bg_cli_run(argc - 1, argv + 1, bg_main__adapters, bg_main__nadapters);
    if (strcmp(cmd, "check") == 0)
        return bg_cli_check(argc - 1, argv + 1);
    if (strcmp(cmd, "explain") == 0)
        return bg_cli_explain(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return bg_cli_token(argc - 1, argv + 1);
    if (strcmp(cmd, "audit") == 0)
        return bg_cli_audit(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return bg_main__version(argc, argv);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return bg_main__help(argc, argv);
    fprintf(stderr, "busgate: unknown command '%s'\n", cmd);
    bg_main__usage(stderr);
    return 2;
}
