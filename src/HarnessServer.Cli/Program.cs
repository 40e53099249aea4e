using HarnessServer.Cli;

// The harness command line: one entry point, also called in-process by the tests (HarnessCli.RunAsync).
return await HarnessCli.RunAsync(args, CliEnvironment.FromProcess());
