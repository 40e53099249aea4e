namespace HarnessServer.Approvals;

/// <summary>
/// Tells the approved-call executor that there may be work: a call was approved or its session resumed. The executor
/// also polls, so a lost signal only delays a call; signals raised while it is busy coalesce into one more pass.
/// </summary>
internal sealed class ApprovalSignal
{
    private readonly SemaphoreSlim _raised = new(0);

    public void Raise()
    {
        if (_raised.CurrentCount == 0)
        {
            _raised.Release();
        }
    }

    /// <summary>Returns when the signal is raised or <paramref name="timeout"/> has passed, whichever comes first.</summary>
    public Task WaitAsync(TimeSpan timeout, CancellationToken cancellationToken) =>
        _raised.WaitAsync(timeout, cancellationToken).ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
}
