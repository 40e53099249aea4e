namespace HarnessServer.Pipeline;

/// <summary>One stage of <see cref="ToolCallPipeline"/>; stages run by ascending <see cref="Order"/>.</summary>
internal interface IToolCallStep
{
    int Order { get; }
    string Name { get; }

    /// <summary>The decision stages are not repeated for a call a human already approved.</summary>
    bool SkippedForApprovedCalls => false;

    Task RunAsync(ToolCallContext context, CancellationToken cancellationToken);
}
