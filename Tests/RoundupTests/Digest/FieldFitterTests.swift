import Foundation
import Testing

@testable import Roundup

/// One table row: text in, the type, what WeChat is sent (nil: the fallback is used).
struct FitCase: CustomTestStringConvertible, Sendable {
    let input: String
    let type: KeywordType
    let expected: String?

    init(_ input: String, _ type: KeywordType, _ expected: String?) {
        self.input = input
        self.type = type
        self.expected = expected
    }

    var testDescription: String { "\(type.rawValue): \(input.debugDescription) → \(expected?.debugDescription ?? "nil")" }
}

@Suite("Field fitting")
struct FieldFitterTests {
    static let thingCases: [FitCase] = [
        FitCase("张老师等2人", .thing, "张老师等2人"),
        FitCase("  hello\n\tworld  \r\n", .thing, "hello world"),
        FitCase("abcdefghijklmnopqrstuvwxy", .thing, "abcdefghijklmnopqrs…"),
        FitCase("今天下午三点在学校礼堂召开家长会请准时参加谢谢", .thing, "今天下午三点在学校礼堂召开家长会请准时…"),
        FitCase("abcdefghijklmnopqrst", .thing, "abcdefghijklmnopqrst"),
        FitCase("aaaaaaaaaaaaaaaaaa bbbb", .thing, "aaaaaaaaaaaaaaaaaa…"),
        FitCase("aaaaaaaaaaaaaaaaae\u{301}xyz", .thing, "aaaaaaaaaaaaaaaaae\u{301}…"),
        FitCase("aaaaaaaaaaaaaaaaaae\u{301}xyz", .thing, "aaaaaaaaaaaaaaaaaa…"),
        FitCase("😀😀", .thing, nil),
        FitCase("Hi 👋🏽 there", .thing, "Hi there"),
        FitCase("👨‍👩‍👧 family", .thing, "family"),
        FitCase("🇨🇳中国", .thing, "中国"),
        FitCase("1️⃣ first #️⃣", .thing, "1 first #"),
        FitCase("❤️ ☺ 谢谢", .thing, "谢谢"),
        FitCase("★通知☆", .thing, "通知☆"),
        FitCase("©2025 ®™", .thing, "2025"),
        FitCase("a\u{0}b\u{7}c\u{9F}d", .thing, "abcd"),
        FitCase("a\u{200B}b\u{FEFF}c\u{202E}d", .thing, "abcd"),
        FitCase("a\u{2028}b\u{85}c\u{3000}d\u{A0}e", .thing, "a b c d e"),
        FitCase("{{count}}条", .thing, "{{count}}条"),
        FitCase("", .thing, nil),
        FitCase(" \n\t ", .thing, nil),
    ]

    static let nameCases: [FitCase] = [
        FitCase("张老师", .name, "张老师"),
        FitCase("欧阳娜娜娜娜娜娜娜娜娜", .name, "欧阳娜娜娜娜娜娜娜…"),
        FitCase("Alexander Hamilton", .name, "Alexander Hamilton"),
        FitCase("Alexander Hamilton Jr.", .name, "Alexander Hamilton…"),
        FitCase("Mr Smith from 北京", .name, "Mr Smith…"),
        FitCase("王 Wang", .name, "王 Wang"),
        FitCase("🙂", .name, nil),
    ]

    static let phraseCases: [FitCase] = [
        FitCase("配送中", .phrase, "配送中"),
        FitCase("😀已读", .phrase, "已读"),
        FitCase("新消息提醒", .phrase, "新消息提醒"),
        FitCase("新消息提醒啊", .phrase, nil),
        FitCase("New", .phrase, nil),
        FitCase("配送 中", .phrase, nil),
        FitCase("配送中！", .phrase, nil),
        FitCase("", .phrase, nil),
    ]

    static let characterStringCases: [FitCase] = [
        FitCase("ORDER-123_abc", .characterString, "ORDER-123_abc"),
        FitCase("a  b", .characterString, "a b"),
        FitCase(String(repeating: "x", count: 40), .characterString, String(repeating: "x", count: 32)),
        FitCase("abc中文", .characterString, nil),
        FitCase("ｆｕｌｌ", .characterString, nil),
        FitCase("abc，def", .characterString, nil),
    ]

    static let numberCases: [FitCase] = [
        FitCase("5", .number, "5"),
        FitCase(" 42\n", .number, "42"),
        FitCase("3.14", .number, "3.14"),
        FitCase(String(repeating: "9", count: 32), .number, String(repeating: "9", count: 32)),
        FitCase(String(repeating: "9", count: 33), .number, nil),
        FitCase("1.2.3", .number, nil),
        FitCase(".5", .number, nil),
        FitCase("5条", .number, nil),
        FitCase("-5", .number, nil),
        FitCase("1 000", .number, nil),
        FitCase("٣", .number, nil),
    ]

    static let letterCases: [FitCase] = [
        FitCase("Hello", .letter, "Hello"),
        FitCase(String(repeating: "ab", count: 20), .letter, String(repeating: "ab", count: 16)),
        FitCase("Hello World", .letter, nil),
        FitCase("abc1", .letter, nil),
        FitCase("café", .letter, nil),
    ]

    static let symbolCases: [FitCase] = [
        FitCase("!?", .symbol, "!?"),
        FitCase("+-", .symbol, "+-"),
        FitCase("¥%…", .symbol, "¥%…"),
        FitCase("%%%%%", .symbol, "%%%%%"),
        FitCase("%%%%%%", .symbol, nil),
        FitCase("★", .symbol, nil),
        FitCase("a!", .symbol, nil),
        FitCase("！", .symbol, nil),
        FitCase("! ?", .symbol, nil),
    ]

    static let phoneCases: [FitCase] = [
        FitCase("+86-0766-66888866", .phoneNumber, "+86-0766-66888866"),
        FitCase("(010) 1234 5678", .phoneNumber, "(010) 1234 5678"),
        FitCase("+86-0766-668888661", .phoneNumber, nil),
        FitCase("12345abc", .phoneNumber, nil),
        FitCase("+-()", .phoneNumber, nil),
    ]

    static let carCases: [FitCase] = [
        FitCase("粤A8Z888挂", .carNumber, "粤A8Z888挂"),
        FitCase("粤A12345", .carNumber, "粤A12345"),
        FitCase("A粤1234", .carNumber, nil),
        FitCase("粤A123456789", .carNumber, nil),
        FitCase("粤A 12345", .carNumber, nil),
    ]

    static let timeCases: [FitCase] = [
        FitCase("2025年3月4日 16:05", .time, "2025年3月4日 16:05"),
        FitCase("16:05", .time, "16:05"),
        FitCase("3月4日 16:05", .time, "3月4日 16:05"),
        FitCase("16:05:30", .time, "16:05:30"),
        FitCase("2025-03-04 16:05", .time, "2025-03-04 16:05"),
        FitCase("15:01~16:30", .time, "15:01~16:30"),
        FitCase("2019年10月1日 15:01 ~ 2019年10月1日 16:00", .time, "2019年10月1日 15:01 ~ 2019年10月1日 16:00"),
        FitCase("24:00", .time, nil),
        FitCase("16:5", .time, nil),
        FitCase("2025年3月4日", .time, nil),
        FitCase("下午4点", .time, nil),
        FitCase("16:05~", .time, nil),
    ]

    static let dateCases: [FitCase] = [
        FitCase("2025年3月4日", .date, "2025年3月4日"),
        FitCase("2025年3月", .date, "2025年3月"),
        FitCase("3月4日", .date, "3月4日"),
        FitCase("2018-01-01", .date, "2018-01-01"),
        FitCase("2018/01/01", .date, "2018/01/01"),
        FitCase("2018.01.01", .date, "2018.01.01"),
        FitCase("2018-01", .date, "2018-01"),
        FitCase("01-01", .date, "01-01"),
        FitCase("2025年3月4日 16:05", .date, "2025年3月4日 16:05"),
        FitCase("2025年3月4日~2025年3月5日", .date, "2025年3月4日~2025年3月5日"),
        FitCase("2025年13月1日", .date, nil),
        FitCase("2025-03/04", .date, nil),
        FitCase("明天", .date, nil),
        FitCase("16:05", .date, nil),
    ]

    static let unfittableCases: [FitCase] = [
        FitCase("¥100", .amount, nil),
        FitCase("100.50元", .amount, nil),
        FitCase("已发货", .enum, nil),
    ]

    @Test(
        "each keyword type keeps, cuts or refuses concrete values",
        arguments: thingCases + nameCases + phraseCases + characterStringCases + numberCases + letterCases + symbolCases
            + phoneCases + carCases + timeCases + dateCases + unfittableCases)
    func table(_ c: FitCase) {
        #expect(FieldFitter.fit(c.input, as: c.type) == c.expected)
    }

    @Test("every emoji-capable scalar but ASCII digits, # and * is removed; plain symbols stay")
    func emojiRule() {
        for v in UInt32(0)...0x10FFFF {
            guard let s = Unicode.Scalar(v) else { continue }
            let keptASCII = s.isASCII
            if s.properties.isEmoji && !keptASCII || s.properties.isEmojiPresentation {
                #expect(FieldFitter.isEmoji(s), "U+\(String(v, radix: 16, uppercase: true))")
            }
            if keptASCII { #expect(!FieldFitter.isEmoji(s)) }
        }
        // Extended_Pictographic without the Emoji property, and its neighbours that are not.
        for removed: Unicode.Scalar in ["\u{2605}", "\u{2388}", "\u{1F000}", "\u{1FAFF}", "\u{1FFFD}", "\u{3030}"] {
            #expect(FieldFitter.isEmoji(removed))
        }
        for kept: Unicode.Scalar in ["\u{2606}", "\u{2318}", "\u{2026}", "\u{4E00}", "\u{FF01}", "\u{1F10C}", "\u{1F200}"] {
            #expect(!FieldFitter.isEmoji(kept))
        }
    }

    // MARK: - property test

    /// Pieces random strings are made of, by kind.
    static let ascii = ["a", "Z", "q", "7", "0", " ", ".", "-", "+", "(", ")", "!", "#", "*", "~", ":", "/", "%", "_"]
    static let cjk = ["中", "文", "张", "老", "师", "〇", "𠀀", "，", "。", "、", "！", "ｆ", "の", "한", "\u{3000}"]
    static let emoji = [
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇨🇳", "🇺🇸", "1️⃣", "#️⃣", "*️⃣", "❤️", "☺", "★", "©", "™", "🀀",
        "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}", "\u{1F3FB}", "\u{FE0F}", "\u{200D}", "\u{1FAE9}",
    ]
    static let marks = [
        "e\u{301}", "n\u{303}\u{323}", "क्षि", "नमस्ते", "\u{1100}\u{1161}\u{11A8}", "ภาษา", "مرحبا", "\u{301}",
        "a\u{301}\u{302}\u{303}\u{304}\u{305}\u{306}\u{307}\u{308}\u{309}\u{30A}\u{30B}\u{30C}", "\u{D4E}",
        "\u{0600}1",
    ]
    static let spaces = ["\n", "\t", "\r\n", "\u{0}", "\u{7}", "\u{1B}", "\u{85}", "\u{2028}", "\u{200B}", "\u{FEFF}",
        "\u{202E}", "\u{A0}", "  ", "\u{7F}"]
    static let values = [
        "16:05", "2025年3月4日", "3月4日 16:05", "2018-01-01", "~", "123", "3.5", "+86-0766-66888866", "粤A8Z888挂",
        "…", "{{count}}", "ABC",
    ]

    /// A random string in one of several moods, so that every type sometimes gets text it accepts.
    static func randomString(_ rng: inout SplitMix64) -> String {
        let moods: [[String]] = [
            ascii + cjk + emoji + marks + spaces + values,  // anything
            ["1", "2", "3", "9", "0", "."] + ["😀", "\n", " "],  // numbers
            ["中", "文", "配", "送", "𠀀"] + ["😀", "\u{200D}", "\n"],  // phrases
            ["a", "B", "z", "Q"] + ["👍🏽", "\t"],  // letters
            ["!", "?", "%", "…", "¥", "+"] + ["❤️", "\u{7}"],  // symbols
            ["1", "8", "+", "-", "(", ")", " "] + ["1️⃣"],  // phone numbers
            ["粤", "A", "8", "Z", "挂"],  // car numbers
            values + spaces + emoji,  // times and dates
        ]
        if rng.next() % 10 == 0 {
            // A time or date, perhaps a range, wrapped in noise the cleaning removes.
            let stamps = ["16:05", "08:30:59", "3月4日 16:05", "2025年3月4日 16:05", "2025年3月4日", "2018-01-01", "01-01"]
            let noise = ["", "😀", "\n", " ", "\u{200B}", "1️⃣"]
            func pick(_ list: [String]) -> String { list[Int(rng.next() % UInt64(list.count))] }
            let second = rng.next() % 3 == 0 ? pick(["~", " ~ "]) + pick(stamps) : ""
            return pick(noise) + pick(stamps) + second + pick(noise)
        }
        let mood = moods[Int(rng.next() % UInt64(moods.count))]
        let long = rng.next() % 10 == 0
        let pieces = Int(rng.next() % (long ? 200 : 14))
        var out = ""
        for _ in 0..<pieces { out += mood[Int(rng.next() % UInt64(mood.count))] }
        return out
    }

    /// The rules a fitted value must keep, whatever the input.
    static func checkRules(_ out: String, input: String, type: KeywordType) {
        let scalars = Array(out.unicodeScalars)
        let context = Comment(rawValue: "\(type.rawValue): \(input.debugDescription) → \(out.debugDescription)")
        #expect(!scalars.isEmpty, context)
        let hasCJK = scalars.contains(where: FieldFitter.isCJK)
        if let limit = FieldFitter.limit(for: type) {
            #expect(scalars.count <= (type == .name && hasCJK ? 10 : limit), context)
        }
        for s in scalars {
            let p = s.properties
            #expect(!p.isEmojiPresentation && !(p.isEmoji && !s.isASCII) && !FieldFitter.isEmoji(s), context)
            #expect(p.generalCategory != .control && p.generalCategory != .format, context)
            #expect(!p.isWhitespace || s == " ", context)
        }
        #expect(!scalars.first!.properties.isWhitespace && !scalars.last!.properties.isWhitespace, context)

        // A cut on a grapheme boundary of the cleaned text; only thing and name add an ellipsis.
        let cleaned = FieldFitter.clean(input)
        var body = out
        if (type == .thing || type == .name) && out != cleaned {
            #expect(scalars.last == "…", context)
            body = String(String.UnicodeScalarView(scalars.dropLast()))
        }
        #expect(Array(cleaned).starts(with: Array(body)), context)
        if ![.thing, .name, .characterString, .letter].contains(type) { #expect(out == cleaned, context) }
        #expect(FieldFitter.fit(out, as: type) == out, "fitting is idempotent: \(context)")

        switch type {
        case .phrase: #expect(scalars.allSatisfy(FieldFitter.isHan), context)
        case .characterString: #expect(!hasCJK, context)
        case .number:
            #expect(scalars.allSatisfy { FieldFitter.isASCIIDigit($0) || $0 == "." }, context)
            #expect(scalars.filter { $0 == "." }.count <= 1, context)
        case .letter: #expect(scalars.allSatisfy(FieldFitter.isASCIILetter), context)
        case .symbol: #expect(scalars.allSatisfy(FieldFitter.isSymbol), context)
        case .phoneNumber: #expect(scalars.allSatisfy { FieldFitter.isASCIIDigit($0) || "+-() ".unicodeScalars.contains($0) })
        case .carNumber: #expect(FieldFitter.isCarNumber(scalars), context)
        case .time: #expect(DateTimeFormat.isTime(out), context)
        case .date: #expect(DateTimeFormat.isDate(out), context)
        case .thing, .name, .amount, .enum: break
        }
    }

    @Test("thousands of random strings always fit their type's rules")
    func randomStringsKeepTheRules() {
        var rng = SplitMix64(seed: 0x5EED_2025)
        let types = KeywordType.allCases.filter(\.isFittable)
        var accepted: [KeywordType: Int] = [:]
        for _ in 0..<4000 {
            let input = Self.randomString(&rng)
            for type in types {
                guard let out = FieldFitter.fit(input, as: type) else { continue }
                accepted[type, default: 0] += 1
                Self.checkRules(out, input: input, type: type)
            }
        }
        // The generator must exercise every type's accepting path, not only its refusals.
        for type in types { #expect(accepted[type, default: 0] > 20, "\(type.rawValue) accepted \(accepted[type, default: 0])") }
    }

    // MARK: - config check

    @Test("config check rejects a fallback that does not fit its field")
    func unfitFallbackIsAProblem() throws {
        let yaml = """
            templates:
              - id: T
                fields:
                  thing1: "{{first_sender}}"
                  phrase2: { value: "{{first_sender}}", fallback: "New message" }
                  thing3: { value: "{{preview}}", fallback: "您有新消息😀" }
            """
        do {
            _ = try ConfigLoader(environment: [:]).load(yaml: yaml)
            Issue.record("expected the config to be rejected")
        } catch {
            let byPath = Dictionary(grouping: error.problems, by: \.keyPath)
            let phrase = try #require(byPath["templates[0].fields.phrase2.fallback"]?.first)
            #expect(phrase.message.contains("\"New message\" does not fit a phrase field"))
            let thing = try #require(byPath["templates[0].fields.thing3.fallback"]?.first)
            #expect(thing.message.contains("it would be sent as \"您有新消息\""))
        }
    }

    @Test("config check accepts fallbacks that fit exactly as written")
    func fittingFallbacksLoad() throws {
        let yaml = """
            templates:
              - id: T
                fields:
                  phrase1: { value: "{{first_sender}}", fallback: "新消息" }
                  thing2: { value: "{{preview}}", fallback: "您有新消息" }
                  number3: { value: "{{count}}", fallback: "1" }
                  time4: { value: "{{last_time}}", fallback: "00:00" }
            """
        let loaded = try ConfigLoader(environment: [:]).load(yaml: yaml)
        #expect(loaded.config.templates.first?.fields.compactMap(\.fallback) == ["新消息", "您有新消息", "1", "00:00"])
    }
}
