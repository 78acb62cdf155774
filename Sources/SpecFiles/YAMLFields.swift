import Yams

/// A problem in a YAML file, located: `file:line:column: field: what was expected`.
public struct SpecError: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var field: String
    public var problem: String

    public init(file: String, line: Int, column: Int, field: String, problem: String) {
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        self.problem = problem
    }

    public var description: String { "\(file):\(line):\(column): \(field.isEmpty ? "" : "\(field): ")\(problem)" }
}

/// Reading spec files and writing YAML text, shared by every kind of spec.
public enum SpecFile {
    /// The file's text, or an error naming the file.
    public static func read(_ path: String) throws(SpecErrors) -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SpecErrors(errors: [SpecError(file: path, line: 0, column: 0, field: "", problem: "cannot read the file: \(error.localizedDescription)")])
        }
    }

    /// A YAML double-quoted scalar.
    public static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

/// Every problem found in one file (reading stops at none: the user sees them all at once).
public struct SpecErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [SpecError]

    public init(errors: [SpecError]) { self.errors = errors }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// Reads typed, range-checked fields out of a YAML mapping, recording located errors instead of
/// throwing at the first one, and refusing keys it was not asked about (a misspelt field must not
/// silently fall back to its default).
public final class YAMLFields {
    public let file: String
    public let path: String
    private let node: Node
    private let pairs: [(key: String, keyNode: Node, value: Node)]
    private var consumed: Set<String> = []
    private let report: Report

    final class Report {
        var errors: [SpecError] = []
    }

    /// Parses `text`; the top level must be a mapping.
    public static func parse(_ text: String, file: String) throws(SpecErrors) -> YAMLFields {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw SpecErrors(errors: [Self.locate(error, file: file)])
        } catch {
            throw SpecErrors(errors: [SpecError(file: file, line: 1, column: 1, field: "", problem: "not valid YAML: \(error)")])
        }
        guard let root, root.mapping != nil else {
            let mark = root?.mark
            throw SpecErrors(errors: [SpecError(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, field: "",
                                                problem: "expected a mapping of fields at the top level")])
        }
        return YAMLFields(node: root, file: file, path: "", report: Report())
    }

    private init(node: Node, file: String, path: String, report: Report) {
        self.node = node
        self.file = file
        self.path = path
        self.report = report
        pairs = (node.mapping ?? [:]).map { (key: $0.key.string ?? "\($0.key)", keyNode: $0.key, value: $0.value) }
        var seen: Set<String> = []
        for pair in pairs where !seen.insert(pair.key).inserted {
            fail(pair.keyNode, field: qualified(pair.key), "appears twice")
        }
    }

    public var errors: [SpecError] { report.errors }

    public func qualified(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func has(_ key: String) -> Bool { pairs.contains { $0.key == key } }

    /// The keys present, in file order.
    public var keys: [String] { pairs.map(\.key) }

    public func value(_ key: String) -> Node? {
        consumed.insert(key)
        return pairs.first { $0.key == key }?.value
    }

    public func fail(_ node: Node?, field: String, _ problem: String) {
        let mark = node?.mark ?? self.node.mark
        report.errors.append(SpecError(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, field: field, problem: problem))
    }

    public func int(_ key: String, default fallback: Int, range: ClosedRange<Int>, unit: String = "") -> Int {
        guard let node = value(key) else { return fallback }
        guard let scalar = node.scalar?.string, let number = Int(scalar.replacingOccurrences(of: "_", with: "")) else {
            fail(node, field: qualified(key), "expected an integer\(unit.isEmpty ? "" : " (\(unit))") in \(range.lowerBound)...\(range.upperBound), got \(Self.show(node))")
            return fallback
        }
        guard range.contains(number) else {
            fail(node, field: qualified(key), "expected \(range.lowerBound)...\(range.upperBound)\(unit.isEmpty ? "" : " \(unit)"), got \(number)")
            return fallback
        }
        return number
    }

    public func double(_ key: String, default fallback: Double, range: ClosedRange<Double>, unit: String = "") -> Double {
        guard let node = value(key) else { return fallback }
        guard let scalar = node.scalar?.string, let number = Double(scalar.replacingOccurrences(of: "_", with: "")), number.isFinite else {
            fail(node, field: qualified(key), "expected a number\(unit.isEmpty ? "" : " (\(unit))") in \(range.lowerBound)...\(range.upperBound), got \(Self.show(node))")
            return fallback
        }
        guard range.contains(number) else {
            fail(node, field: qualified(key), "expected \(range.lowerBound)...\(range.upperBound)\(unit.isEmpty ? "" : " \(unit)"), got \(number)")
            return fallback
        }
        return number
    }

    public func choice(_ key: String, default fallback: String, from allowed: [String]) -> String {
        guard let node = value(key) else { return fallback }
        guard let scalar = node.scalar?.string, allowed.contains(scalar) else {
            fail(node, field: qualified(key), "expected one of \(allowed.joined(separator: ", ")), got \(Self.show(node))")
            return fallback
        }
        return scalar
    }

    /// A value of a string-backed enum, named by its raw value; the error lists every case.
    public func choice<Choice: RawRepresentable & CaseIterable>(_ key: String, default fallback: Choice) -> Choice
        where Choice.RawValue == String {
        guard let node = value(key) else { return fallback }
        guard let scalar = node.scalar?.string, let chosen = Choice(rawValue: scalar) else {
            let allowed = Choice.allCases.map(\.rawValue)
            fail(node, field: qualified(key), "expected one of \(allowed.joined(separator: ", ")), got \(Self.show(node))")
            return fallback
        }
        return chosen
    }

    public func string(_ key: String, default fallback: String) -> String {
        guard let node = value(key) else { return fallback }
        guard let scalar = node.scalar?.string else {
            fail(node, field: qualified(key), "expected a string, got \(Self.show(node))")
            return fallback
        }
        return scalar
    }

    public func bool(_ key: String, default fallback: Bool) -> Bool {
        guard let node = value(key) else { return fallback }
        guard let flag = node.bool else {
            fail(node, field: qualified(key), "expected true or false, got \(Self.show(node))")
            return fallback
        }
        return flag
    }

    /// A nested mapping; nil (and an error) when the field is there but is not a mapping.
    public func mapping(_ key: String) -> YAMLFields? {
        guard let node = value(key) else { return nil }
        guard node.mapping != nil else {
            fail(node, field: qualified(key), "expected a mapping of fields, got \(Self.show(node))")
            return nil
        }
        return YAMLFields(node: node, file: file, path: qualified(key), report: report)
    }

    /// The elements of a sequence field, each with its own path (`events[2]`).
    public func sequence(_ key: String) -> [(path: String, node: Node)] {
        guard let node = value(key) else { return [] }
        guard let elements = node.sequence else {
            fail(node, field: qualified(key), "expected a list, got \(Self.show(node))")
            return []
        }
        return elements.enumerated().map { ("\(qualified(key))[\($0.offset)]", $0.element) }
    }

    /// A mapping element of a sequence, as fields.
    public func fields(of node: Node, path: String) -> YAMLFields? {
        guard node.mapping != nil else {
            fail(node, field: path, "expected a mapping of fields, got \(Self.show(node))")
            return nil
        }
        return YAMLFields(node: node, file: file, path: path, report: report)
    }

    /// Reports every key nobody asked for. Call after reading all fields of this mapping.
    public func rejectUnknown(expected: [String]) {
        for pair in pairs where !consumed.contains(pair.key) {
            fail(pair.keyNode, field: qualified(pair.key), "unknown field (expected one of: \(expected.joined(separator: ", ")))")
        }
    }

    public static func show(_ node: Node) -> String {
        switch node {
        case let .scalar(scalar): "\"\(scalar.string)\""
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    static func locate(_ error: YamlError, file: String) -> SpecError {
        switch error {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
            return SpecError(file: file, line: mark.line, column: mark.column, field: "", problem: "not valid YAML: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            return SpecError(file: file, line: context.mark.line, column: context.mark.column, field: duplicates.sorted().joined(separator: ", "),
                             problem: "appears twice in the mapping that starts here")
        default:
            return SpecError(file: file, line: 1, column: 1, field: "", problem: "not valid YAML: \(error)")
        }
    }
}
