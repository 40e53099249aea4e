namespace HarnessServer.Pipeline;

/// <summary>One stage of <see cref="ToolCallPipeline"/>, which lists them in the order they run.</summary>
internal interface IToolCallStep
{
    string Name { get; }

    /// <summary>The decision stages are not repeated for a call a human already approved.</summary>
    bool SkippedForApprovedCalls => false;

    Task RunAsync(ToolCallContext context, CancellationToken cancellationToken);
}
