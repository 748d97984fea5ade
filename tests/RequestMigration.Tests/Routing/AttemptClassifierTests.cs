using System.Net.Sockets;
using System.Security.Authentication;
using RequestMigration.Routing;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Routing;

/// <summary>The whole table of how an attempt's ending is classified (what is retried, counted, blamed).</summary>
public sealed class AttemptClassifierTests
{
    private static readonly Dictionary<string, (AttemptOutcome Outcome, AttemptResult Expected)> Table = new()
    {
        ["refused"] = (AttemptClassifier.ConnectFailed(new SocketException((int)SocketError.ConnectionRefused), 0xab, "127.0.0.1:1"), AttemptResult.Unreachable),
        ["connect timeout"] = (AttemptClassifier.ConnectFailed(new IOException("connect to x timed out after 5 s"), 0xab, "127.0.0.1:1"), AttemptResult.Unreachable),
        ["bad address in the record"] = (AttemptClassifier.ConnectFailed(new FormatException("address 'x' is not host:port"), 0xab, "x"), AttemptResult.Unreachable),
        ["untrusted certificate"] = (AttemptClassifier.ConnectFailed(new AuthenticationException("untrusted root"), 0xab, "127.0.0.1:1"), AttemptResult.LocalFailure),
        ["missing CA file"] = (AttemptClassifier.ConnectFailed(new FileNotFoundException("certs/ca.pem"), 0xab, "127.0.0.1:1"), AttemptResult.LocalFailure),
        ["runtime disposed"] = (AttemptClassifier.ConnectFailed(new ObjectDisposedException("connector"), 0xab, "127.0.0.1:1"), AttemptResult.LocalFailure),
        ["stale pooled connection, nothing read"] = (AttemptClassifier.ReceiveFailed(new IOException("reset"), reused: true, framesSeen: 0), AttemptResult.StaleConnection),
        ["fresh connection reset before the first frame"] = (AttemptClassifier.ReceiveFailed(new IOException("reset"), reused: false, framesSeen: 0), AttemptResult.Broken),
        ["pooled connection reset mid-response"] = (AttemptClassifier.ReceiveFailed(new IOException("reset"), reused: true, framesSeen: 3), AttemptResult.Broken),
        ["garbage from the instance"] = (AttemptClassifier.ReceiveFailed(new ProtocolException("unknown frame type 0x7f"), reused: false, framesSeen: 1), AttemptResult.Broken),
        ["item over our limit"] = (AttemptClassifier.ReceiveFailed(new ProtocolException("too big", ErrorCode.FrameTooLarge), reused: false, framesSeen: 1), AttemptResult.Rejected),
        ["end of stream on a pooled connection"] = (AttemptClassifier.EndedEarly(reused: true, framesSeen: 0), AttemptResult.StaleConnection),
        ["end of stream mid-response"] = (AttemptClassifier.EndedEarly(reused: false, framesSeen: 2), AttemptResult.Broken),
        ["first item timeout"] = (AttemptClassifier.TimedOut(TimeSpan.FromSeconds(2)), AttemptResult.Broken),
        ["draining before anything"] = (AttemptClassifier.ErrorFrame(ErrorCode.Unavailable, "shutting down", framesSeen: 1), AttemptResult.Draining),
        ["overloaded after items"] = (AttemptClassifier.ErrorFrame(ErrorCode.Unavailable, "shutting down", framesSeen: 3), AttemptResult.Broken),
        ["server says incomplete"] = (AttemptClassifier.ErrorFrame(ErrorCode.StreamIncomplete, StreamErrors.StreamIncomplete, framesSeen: 2), AttemptResult.Broken),
        ["unknown endpoint"] = (AttemptClassifier.ErrorFrame(ErrorCode.UnknownEndpoint, "unknown endpoint", framesSeen: 1), AttemptResult.Broken),
        ["handler error"] = (AttemptClassifier.ErrorFrame(ErrorCode.Handler, "bad prompt", framesSeen: 1), AttemptResult.Rejected),
        ["bad request"] = (AttemptClassifier.ErrorFrame(ErrorCode.BadRequest, "cannot decode", framesSeen: 1), AttemptResult.Rejected),
        ["handler error that mentions the sentinel"] = (AttemptClassifier.ErrorFrame(ErrorCode.Handler, "upstream: " + StreamErrors.StreamIncomplete, framesSeen: 1), AttemptResult.Broken),
    };

    public static TheoryData<string> Cases => [.. Table.Keys];

    [Theory]
    [MemberData(nameof(Cases))]
    public void Classifies(string what) =>
        Table[what].Outcome.Result.ShouldBe(Table[what].Expected, what);

    [Fact]
    public void Free_retries_blame_the_instance_except_a_stale_connection()
    {
        new AttemptOutcome(AttemptResult.Unreachable, "x").IsFree.ShouldBeTrue();
        new AttemptOutcome(AttemptResult.Unreachable, "x").BlamesInstance.ShouldBeTrue();
        new AttemptOutcome(AttemptResult.StaleConnection, "x").IsFree.ShouldBeTrue();
        new AttemptOutcome(AttemptResult.StaleConnection, "x").BlamesInstance.ShouldBeFalse();
        new AttemptOutcome(AttemptResult.Broken, "x").IsFree.ShouldBeFalse();
        new AttemptOutcome(AttemptResult.LocalFailure, "x").BlamesInstance.ShouldBeFalse();
        new AttemptOutcome(AttemptResult.Rejected, "x").EndsCall.ShouldBeTrue();
    }

    [Fact]
    public void Local_failures_say_no_instance_was_blamed_and_keep_the_cause()
    {
        var cause = new AuthenticationException("The remote certificate is invalid: UntrustedRoot");
        var outcome = AttemptClassifier.ConnectFailed(cause, 0xab, "127.0.0.1:1");
        var ex = outcome.Exception.ShouldBeOfType<LocalConfigurationException>();
        ex.InnerException.ShouldBeSameAs(cause);
        ex.Message.ShouldContain("DYN_TLS_CA_FILE");
        ex.Message.ShouldContain("no instance was reported down");
    }

    [Fact]
    public void The_budget_counts_only_real_failures_and_bounds_free_retries()
    {
        var budget = new CallBudget(maxAttempts: 2, freeRetries: 2, migration: false);
        var unreachable = new AttemptOutcome(AttemptResult.Unreachable, "refused");
        budget.OnAttemptEnded(unreachable, 1, 0).ShouldBe(NextStep.RetryQuietly);
        budget.OnAttemptEnded(unreachable, 2, 0).ShouldBe(NextStep.RetryQuietly);
        budget.OnAttemptEnded(unreachable, 3, 0).ShouldBe(NextStep.Retry, "free retries are used up: now it counts");
        budget.FailedOn!.ShouldBe([1UL, 2UL, 3UL], ignoreOrder: true);
        budget.OnAttemptEnded(new AttemptOutcome(AttemptResult.Broken, "cut"), 4, 5).ShouldBe(NextStep.Fail);
        budget.FailedAttempts.ShouldBe(2);
        budget.AttemptNumber.ShouldBe(5);
    }

    [Fact]
    public void With_migration_an_attempt_that_made_progress_does_not_count()
    {
        var budget = new CallBudget(maxAttempts: 1, freeRetries: 0, migration: true);
        var cut = new AttemptOutcome(AttemptResult.Broken, "cut");
        budget.OnAttemptEnded(cut, 1, itemsRead: 3).ShouldBe(NextStep.RetryQuietly);
        budget.OnAttemptEnded(cut, 2, itemsRead: 1).ShouldBe(NextStep.RetryQuietly);
        budget.OnAttemptEnded(cut, 3, itemsRead: 0).ShouldBe(NextStep.Fail, "no progress: that uses up the only attempt");
    }
}
