import Foundation
import Primitives
import Testing
@testable import Workload

@Suite struct GeneratorTests {
    @Test(arguments: [0.5, 0.9, 0.99, 1.2])
    func zipfianFrequenciesFollowTheory(theta: Double) {
        let zipf = Zipfian(count: 100, theta: theta)
        var random = SplitMix64(seed: 7)
        let draws = 400_000
        var counts = [Int](repeating: 0, count: 100)
        for _ in 0..<draws { counts[zipf.next(&random)] += 1 }
        // The most popular ranks carry the skew; each must be within 4% (relative) of theory.
        for rank in 0..<10 {
            let expected = zipf.probability(ofRank: rank) * Double(draws)
            #expect(abs(Double(counts[rank]) - expected) / expected < 0.04, "rank \(rank): \(counts[rank]) draws, expected \(expected)")
        }
        // And the whole distribution: total variation distance below 0.01 (sampling noise at this
        // many draws is about 0.006).
        let distance = (0..<100).reduce(0.0) { $0 + abs(Double(counts[$1]) / Double(draws) - zipf.probability(ofRank: $1)) } / 2
        #expect(distance < 0.01, "total variation distance \(distance)")
        // Rank order: popularity falls with rank.
        #expect(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[99])
    }

    @Test func theoreticalZipfianProbabilitiesSumToOne() {
        let zipf = Zipfian(count: 1_000, theta: 0.99)
        let total = (0..<1_000).reduce(0.0) { $0 + zipf.probability(ofRank: $1) }
        #expect(abs(total - 1) < 1e-9)
    }

    @Test func hotspotGivesTheHotKeysTheirShare() {
        var keys = KeyGenerator(spec: KeySpec(count: 1_000, distribution: .hotspot, hotspotFraction: 0.1, hotspotProbability: 0.8))
        var random = SplitMix64(seed: 3)
        var hot = 0
        for _ in 0..<100_000 where keys.next(&random) < 100 { hot += 1 }
        #expect(abs(Double(hot) / 100_000 - 0.8) < 0.01)
    }

    @Test func sequentialKeysCycle() {
        var keys = KeyGenerator(spec: KeySpec(count: 3, distribution: .sequential))
        var random = SplitMix64(seed: 1)
        #expect((0..<7).map { _ in keys.next(&random) } == [0, 1, 2, 0, 1, 2, 0])
    }

    @Test func uniformKeysCoverTheRange() {
        var keys = KeyGenerator(spec: KeySpec(count: 10, distribution: .uniform))
        var random = SplitMix64(seed: 1)
        var counts = [Int](repeating: 0, count: 10)
        for _ in 0..<100_000 { counts[keys.next(&random)] += 1 }
        for count in counts { #expect(abs(count - 10_000) < 500) }
    }

    @Test func poissonArrivalsHaveTheTargetRateAndExponentialGaps() {
        let arrivals = ArrivalGenerator(process: .poisson, rateOperationsPerSecond: 5_000)
        var random = SplitMix64(seed: 11)
        let gaps = (0..<200_000).map { _ in Double(arrivals.nextGapNanoseconds(&random)) }
        let mean = gaps.reduce(0, +) / Double(gaps.count)
        let variance = gaps.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(gaps.count)
        // Mean gap 200 µs; an exponential distribution's standard deviation equals its mean.
        #expect(abs(mean - 200_000) / 200_000 < 0.01)
        #expect(abs(variance.squareRoot() - mean) / mean < 0.02)
        // Arrivals in one simulated second ≈ the rate.
        var elapsed = 0.0, count = 0
        while elapsed < 1e9 { elapsed += gaps[count]; count += 1 }
        #expect(abs(count - 5_000) < 250)
    }

    @Test func uniformArrivalsAreEvenlySpaced() {
        let arrivals = ArrivalGenerator(process: .uniform, rateOperationsPerSecond: 4_000)
        var random = SplitMix64(seed: 1)
        #expect((0..<10).allSatisfy { _ in arrivals.nextGapNanoseconds(&random) == 250_000 })
    }

    @Test func theMixFollowsItsProportions() {
        let picker = MixPicker(mix: [.kvGet: 0.7, .logAppend: 0.2, .lockAcquire: 0.1])
        var random = SplitMix64(seed: 5)
        var counts: [OperationKind: Int] = [:]
        for _ in 0..<100_000 { counts[picker.next(&random), default: 0] += 1 }
        #expect(abs(Double(counts[.kvGet]!) / 100_000 - 0.7) < 0.01)
        #expect(abs(Double(counts[.logAppend]!) / 100_000 - 0.2) < 0.01)
        #expect(abs(Double(counts[.lockAcquire]!) / 100_000 - 0.1) < 0.01)
    }

    @Test func operationKindsSortInDeclarationOrderAndHashApart() {
        #expect(OperationKind.allCases.reversed().sorted() == OperationKind.allCases)
        #expect(Set(OperationKind.allCases).count == OperationKind.allCases.count)
        #expect(Set(OperationKind.allCases.map(\.hashValue)).count == OperationKind.allCases.count)
    }

    @Test func valuesHaveTheConfiguredSizes() {
        let values = ValueGenerator(spec: ValueSpec(sizeBytesMin: 10, sizeBytesMax: 20))
        var random = SplitMix64(seed: 1)
        let sizes = (0..<1_000).map { _ in values.next(&random).utf8.count }
        #expect(sizes.min() == 10 && sizes.max() == 20)
    }

    /// A unique value is its writer (hex) and sequence as a tag, padded with filler to a drawn size,
    /// and never shorter than the tag.
    @Test func uniqueValuesCarryTheirTagAndTheDrawnSize() {
        let values = ValueGenerator(spec: ValueSpec(sizeBytesMin: 8, sizeBytesMax: 24))
        var random = SplitMix64(seed: 3)
        var seen = Set<String>()
        for sequence in UInt64(0)..<2_000 {
            let client = sequence % 7 == 0 ? UInt64.max : sequence * 977
            let tag = "c\(String(client, radix: 16))s\(sequence)."
            var sizes = random
            let size = ValueGenerator(spec: values.spec).next(&sizes).utf8.count
            let value = values.unique(client: client, sequence: sequence, &random)
            #expect(value.hasPrefix(tag))
            #expect(value.utf8.count == max(size, tag.utf8.count))
            #expect(value.dropFirst(tag.count).allSatisfy { $0 == "v" })
            seen.insert(value)
        }
        #expect(seen.count == 2_000)
    }
}
