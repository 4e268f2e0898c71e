#!/usr/bin/python3
"""kb_templates.py - a knowledge base of N solution templates for the server benchmark.

The shipped sample (kb/sample: 109 templates, 107 cases) is too small to measure "bot turns per
second with a search per turn on a 1,000-template knowledge base".  This script writes
OUT/templates.jsonl and OUT/cases.jsonl in the kb/README.md JSON Lines format, ready for
`redress serve --kb.seed OUT` or `redress kb import`:

  templates.jsonl  the sample templates, byte for byte, then generated ones (keys gen-00001 ...)
                   until there are exactly --count templates
  cases.jsonl      the sample cases, byte for byte

Generated templates come from real customer questions: the AFQMC training split (Alipay
customer service: 花呗, 借呗, 余额宝, 银行卡, 还款, 额度, 逾期 ...), read at run time and never
copied into the repository.  Each question is cleaned (greetings, masked amounts "***",
traditional-character and over-long lines dropped; long ones cut at the first clause) and
sorted into a topic by keywords, most specific topic first.  A topic fixes the category (one of
the kb_categories slugs the flows use, rules/lexicon/categories.lua), the severity, a
conditions sentence, answer texts, a pool of internal steps, the compensation and the deadline.
A template then takes:

  title       the cleaned question
  conditions  the topic's sentence for the product asked about, plus the paired AFQMC question
              when it is a paraphrase (label 1)
  text        one of the topic's polite answers for that product (or for the topic's usual
              product when its texts do not fit the one asked about: PRODUCT_FIT), with the
              placeholders the flows fill from collected slots ({金额}元, {日期}, {卡号后四位},
              {订单号}, {手机号}; lib/solutions.lua), written to read well when a slot is blank
  steps       2-4 of the topic's steps, in order
  tags        the product, the keywords that matched, one or two topic phrases

Topics are taken round-robin (each topic's questions shuffled), so small topics are not crowded
out by the thousands of 花呗 questions.  The output depends only on --seed, --count and the
input files.

Usage: bench/kb_templates.py --count N --out DIR [--afqmc TSV] [--seed S]
"""
import argparse
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
SAMPLE = os.path.join(SRC, "kb", "sample")
DEFAULT_AFQMC = os.path.normpath(os.path.join(SRC, "..", "shared", "data", "afqmc_train.tsv"))

# Products, most specific first; <P> in the texts below becomes the product's name.
PRODUCTS = [
    ("网商贷", ["网商贷"]),
    ("借呗", ["借呗"]),
    ("花呗", ["花呗", "花贝", "花被"]),
    ("余额宝", ["余额宝"]),
    ("信用卡", ["信用卡"]),
    ("银行卡", ["银行卡", "储蓄卡", "借记卡"]),
]
DEFAULT_PRODUCT = "支付宝"
CREDIT = ["花呗", "借呗", "网商贷", "信用卡"]
PAYING = ["花呗", "余额宝", "信用卡", "银行卡"]
# The products a topic's texts make sense for, and the one named otherwise (a question that
# names none is nearly always about 花呗 in AFQMC).  Topics not listed take any product.
PRODUCT_FIT = {
    "overdue": (CREDIT, "花呗"),
    "refund": (PAYING, "花呗"),
    "topup": (PAYING, DEFAULT_PRODUCT),
    "collect": (PAYING, "花呗"),
    "fee": (CREDIT, "花呗"),
    "deduct": (CREDIT, "花呗"),
    "disburse": (["借呗", "网商贷", "余额宝"], DEFAULT_PRODUCT),
    "installment": (["花呗", "信用卡"], "花呗"),
    "repay": (CREDIT, "花呗"),
    "limit": (CREDIT, "花呗"),
    "pay": (PAYING, DEFAULT_PRODUCT),
    "open": (["花呗", "借呗", "网商贷", "余额宝"], "花呗"),
}

# One topic: (name, category, severity, keywords, conditions, texts, steps, compensation,
# deadline, deadline_hours, tags).  The first topic with a keyword in the question wins.
TOPICS = [
    (
        "fraud", "bank.card", 3,
        ["盗刷", "被盗", "盗用", "诈骗", "骗子", "被骗", "不是本人操作", "非本人", "不是我操作"],
        "客户反映<P>被他人盗用、遭遇诈骗或出现非本人操作的交易。",
        [
            "您好，非常理解您现在的担心，请您先不要着急。我们已为您的<P>开启交易保护，"
            "{日期}这笔{金额}元交易会作为疑似非本人交易处理。请您立即修改支付密码，"
            "不要向任何人透露验证码；如已报警，请保留报警回执。核实为盗用的，"
            "损失将由账户安全保障为您全额赔付，结果会在3个工作日内通知您。",
            "您好，感谢您及时告诉我们。为保护您的资金安全，<P>已临时限制大额支出，"
            "我们会调取这笔交易前后的登录设备和交易记录进行核查。请您留意，"
            "官方客服不会索要密码和验证码。核查确认非本人操作的，"
            "相关款项{金额}元将全额退回，我们会在3个工作日内给您答复。",
        ],
        [
            "立即冻结可疑交易并开启账户保护，限制大额支出",
            "核对登录设备、IP和交易时间，判断是否非本人操作",
            "指导客户修改登录和支付密码，解绑可疑设备",
            "收集报警回执和沟通截图，提交账户安全理赔",
            "理赔结果确认后回访客户并记录赔付流水号",
        ],
        "核实为盗用的，由账户安全保障全额赔付",
        "3个工作日内", 72,
        ["被盗刷", "账户安全", "非本人操作", "诈骗"],
    ),
    (
        "service", "service.attitude", 2,
        ["客服", "人工", "投诉", "打电话", "态度"],
        "客户对<P>相关的客服服务不满，或找不到人工客服、问题反复咨询未解决。",
        [
            "您好，非常抱歉之前的服务没有让您满意，也感谢您愿意再次联系我们。"
            "您反映的<P>问题我已完整记录，将由专人跟进处理，"
            "不需要您再重复描述。处理结果会在24小时内通过短信告知您，必要时我们会致电{手机号}。",
            "您好，给您带来不好的体验，我们深表歉意。关于<P>的问题，"
            "我已为您登记加急工单，由资深客服专员负责到底，24小时内主动与您联系。"
            "如果对处理结果仍不满意，您可以随时回复，我们会升级处理。",
        ],
        [
            "调取历史咨询记录和通话录音，梳理客户诉求",
            "登记加急工单并指定专人跟进，告知客户工单号",
            "核实服务过程中的问题，对相关人员进行辅导",
            "24小时内回电告知处理结果并回访满意度",
        ],
        "属服务问题的，致歉并视情况赠送会员权益",
        "24小时内", 24,
        ["找不到客服", "人工客服", "服务态度", "没人处理"],
    ),
    (
        "frozen", "bank.card", 2,
        ["冻结", "限制", "风控", "风险", "封了", "被封", "停用", "关停", "暂停", "停止"],
        "客户的<P>被冻结、限制使用或提示存在风险，无法正常支付或借款。",
        [
            "您好，理解您无法使用<P>的着急心情。系统会根据账户安全和综合评估对服务进行保护性限制，"
            "这并不代表您的信用有问题。我们已为您提交复核申请，"
            "请保持账户实名信息和绑定的手机号有效，复核结果会在3个工作日内通知您。",
            "您好，经查询，您的<P>目前处于限制状态。为保障资金安全，"
            "近期存在异常登录、频繁交易或信息不完整时，系统会暂时限制部分功能。"
            "您可以先完成身份验证，我们同步为您申请人工复核，3个工作日内给您答复。",
        ],
        [
            "查询限制原因代码和触发时间",
            "引导客户完成身份验证、补充实名资料",
            "提交人工复核申请，附客户说明",
            "复核通过后解除限制并短信通知客户",
            "复核未通过的，向客户解释可再次申请的时间",
        ],
        "",
        "3个工作日内", 72,
        ["被冻结", "用不了", "账户限制", "风控"],
    ),
    (
        "overdue", "bank.card", 2,
        ["逾期", "罚息", "违约", "征信", "负面记录", "不良记录", "信用记录", "催收", "还不上", "晚还"],
        "客户的<P>出现逾期、违约记录，或担心逾期影响个人信用。",
        [
            "您好，理解您对信用记录的担心。您的<P>账单已于{日期}逾期，"
            "逾期期间按日计收逾期利息。您尽快还清{金额}元欠款后，逾期利息即停止计算，"
            "服务一般会在还款后1个工作日内恢复。如因系统原因导致扣款失败，"
            "我们会为您申请减免逾期利息并消除该次逾期记录。",
            "您好，感谢您主动联系我们。<P>的还款日以账单页面显示为准，当天24点前还款都不算逾期。"
            "如您暂时有困难，可以先还部分金额，我们也可以为您登记延期还款申请，"
            "审核结果会在3个工作日内告知您。请尽量避免持续逾期，以免影响个人信用。",
        ],
        [
            "查询账单、还款记录和逾期天数",
            "核实是否存在系统扣款失败、到账延迟等非客户原因",
            "非客户原因的，提交逾期利息减免和记录更正申请",
            "客户有困难的，登记延期或分期还款申请",
            "还清后确认服务恢复并短信告知客户",
        ],
        "系统原因造成逾期的，减免逾期利息并更正逾期记录",
        "3个工作日内", 72,
        ["逾期", "影响信用", "逾期利息", "违约"],
    ),
    (
        "refund", "ecom.refund", 2,
        ["退款", "退货", "退回", "退钱", "退了", "撤销"],
        "客户使用<P>付款的订单已退款或退货，但钱未退回、账单未变化或退款去向不清楚。",
        [
            "您好，非常抱歉让您久等。您订单{订单号}的退款{金额}元已由商家同意，"
            "使用<P>付款的退款会原路退回<P>，一般1-3个工作日到账；"
            "已出账的部分会冲抵下期账单，多还的金额会退回您的余额。请您届时留意到账提醒。",
            "您好，我们已查询到您订单{订单号}的退款记录。退款会按付款方式原路退回，"
            "退到<P>后会自动恢复相应额度或抵扣账单。如超过3个工作日仍未到账，"
            "我们会联系商家和支付渠道核查，并把结果告诉您。",
        ],
        [
            "查询订单号、退款单状态和退款发起时间",
            "确认退款是否已原路退回以及冲抵的账单期数",
            "超时未到账的，联系商家或支付渠道催办",
            "到账后短信通知客户并结单",
        ],
        "超出承诺时效未到账的，补偿等额红包",
        "3个工作日内", 72,
        ["退款没到账", "原路退回", "退款", "退货"],
    ),
    (
        "topup", "telecom.billing", 1,
        ["话费", "充值", "流量", "充错"],
        "客户用<P>充值话费、流量后未到账、充错号码或被重复扣款。",
        [
            "您好，抱歉让您着急了。您{日期}为{手机号}充值{金额}元，"
            "运营商繁忙时到账会有延迟，一般不超过24小时。"
            "如超时仍未到账，充值款会自动原路退回<P>，无需您额外操作。",
            "您好，我们已查询到您的充值订单{订单号}。如运营商确认充值失败，"
            "款项会在24小时内原路退回<P>；如已重复扣款，多扣款项{金额}元将一并退回。"
            "号码充错的，我们会尝试联系运营商协助追回。",
        ],
        [
            "查询充值订单状态和运营商返回结果",
            "超时未到账的，向运营商发起催单",
            "充值失败或重复扣款的，发起原路退款",
            "充错号码的，协助联系运营商处理",
        ],
        "充值失败的全额退回",
        "24小时内", 24,
        ["话费没到账", "充值失败", "充错号码", "流量"],
    ),
    (
        "collect", "ecom.payment", 1,
        ["收款", "收钱码", "收钱", "商家", "店铺", "商户", "收不了"],
        "商家或个人用<P>收款时收不到款、限额或被提示不支持该付款方式。",
        [
            "您好，感谢您的耐心。收款码支持<P>付款需要您开通对应的收款服务，"
            "个人收款码单笔和当日收款有限额。付款方{日期}支付的{金额}元款项如显示已付款但未入账，"
            "我们会在1个工作日内核实并补入您的账户。",
            "您好，我们已查询您的收款记录。付款方付款成功后，款项通常实时到账；"
            "如付款方使用<P>付款但您未收到，请提供订单号{订单号}，"
            "我们会在1个工作日内核查资金去向并回复您。",
        ],
        [
            "查询收款码类型、收款服务开通状态和限额",
            "根据付款方订单号核查资金流向",
            "款项未入账的，发起补入账",
            "向客户说明开通商家收款、提升限额的方法",
        ],
        "",
        "1个工作日内", 24,
        ["收款码", "收不到钱", "商家收款", "收款限额"],
    ),
    (
        "promo", "general", 1,
        ["红包", "优惠", "奖励", "活动", "积分", "券", "返现", "立减"],
        "客户对<P>的红包、优惠券、活动奖励未到账或无法使用有疑问。",
        [
            "您好，感谢您参加活动。<P>红包和优惠券有使用门槛和有效期，"
            "满足条件时会在付款或还款时自动抵扣。您{日期}领取的奖励如未到账，"
            "我们会在3个工作日内核实，符合规则的为您补发。",
            "您好，活动奖励一般在满足条件后3个工作日内发放，可在“我的-红包卡券”查看。"
            "如您符合活动规则但未收到<P>奖励，请告诉我们活动名称，我们会为您补发。",
        ],
        [
            "查询活动规则、领取记录和发放状态",
            "核对客户是否满足使用或发放条件",
            "符合规则未到账的，申请补发",
            "向客户说明使用门槛和有效期",
        ],
        "符合规则的补发奖励",
        "3个工作日内", 72,
        ["红包", "优惠券", "活动奖励", "没返现"],
    ),
    (
        "fee", "bank.fee", 2,
        ["手续费", "利息", "利率", "服务费", "费用", "年费", "多扣", "收费", "日息", "年化", "费率"],
        "客户对<P>收取的利息、手续费或服务费有疑问，或认为被多收了费用。",
        [
            "您好，非常理解您对费用的关注。<P>的利息和手续费按实际使用天数和页面公示的费率计算，"
            "经核对您{日期}的这笔{金额}元费用，如存在多收的情况，"
            "多收部分会在3个工作日内退回原账户，并有到账提醒。",
            "您好，给您带来困扰了。我们已为您调取<P>的计费明细：费用按借款金额、"
            "实际使用天数和当时的费率计算，提前还款只收实际使用天数的费用。"
            "如您核对后仍有疑问，我们会在3个工作日内完成复核并回复您。",
        ],
        [
            "调取计费明细，核对费率、计息天数和金额",
            "向客户逐项解释费用构成",
            "确认多收的，填写费用退还申请并发起退费",
            "退费完成后回访客户并记录退费流水号",
        ],
        "多收部分全额退还",
        "3个工作日内", 72,
        ["手续费", "利息太高", "多收费", "费率"],
    ),
    (
        "deduct", "bank.fee", 2,
        ["扣款", "扣钱", "扣了", "自动扣", "代扣", "扣我", "划扣"],
        "客户的<P>被自动扣款、重复扣款，或扣款金额与账单不符。",
        [
            "您好，非常抱歉给您带来困扰。经查询，{日期}从您尾号{卡号后四位}的账户扣款{金额}元，"
            "是<P>的自动还款。如您不需要自动扣款，可以在设置中关闭；"
            "核实为重复扣款或多扣的，我们会在3个工作日内原路退回。",
            "您好，我们已为您查询<P>的扣款记录。自动扣款会优先从余额扣除，不足时从绑定的银行卡扣除。"
            "这笔扣款{金额}元如与您的账单不符，我们会在3个工作日内核实，多扣部分原路退回。",
        ],
        [
            "查询扣款流水、扣款渠道和对应账单",
            "核对是否为自动还款、代扣协议扣款或重复扣款",
            "重复扣款或多扣的，发起原路退款",
            "指导客户查看或关闭自动扣款设置",
        ],
        "重复或多扣的款项原路退回",
        "3个工作日内", 72,
        ["自动扣款", "重复扣款", "莫名扣钱", "扣款"],
    ),
    (
        "disburse", "bank.transfer", 2,
        ["到账", "提现", "转账", "放款", "打款", "转到", "转入", "转出", "到卡"],
        "客户用<P>借款、提现或转账后，资金迟迟未到账或显示处理中。",
        [
            "您好，理解您等钱用的心情。您{日期}通过<P>发起的{金额}元款项已处理成功，"
            "到达尾号{卡号后四位}的银行卡一般需要2小时，个别银行会延迟到下一个工作日。"
            "如超过1个工作日仍未到账，我们会向收款银行发起查询并告诉您结果。",
            "您好，我们已查询到这笔款项{金额}元的记录，目前状态为银行处理中。"
            "请您核对银行卡号和户名是否正确；如银行退回，款项会自动退回<P>。"
            "我们会持续跟进，1个工作日内给您明确答复。",
        ],
        [
            "查询借款、提现或转账订单状态和银行返回结果",
            "核对收款卡号、户名和开户行",
            "超时未到账的，向收款银行发起查询",
            "银行退回的，确认款项已退回原账户并通知客户",
        ],
        "",
        "1个工作日内", 24,
        ["没到账", "提现", "放款", "转账"],
    ),
    (
        "installment", "bank.card", 1,
        ["分期", "免息", "期数", "分几期"],
        "客户咨询<P>账单或交易分期、免息分期的办理、费用和提前结清。",
        [
            "您好，感谢您的咨询。<P>支持账单分期和交易分期，可选3、6、12期，"
            "分期手续费按期收取，以页面公示为准；商家承担手续费的免息分期不收取您的费用。"
            "办理后每月还款金额会在账单中显示，如有疑问请随时联系我们。",
            "您好，您这笔交易{金额}元可以在<P>账单页面选择分期。"
            "分期后如想提前还清，可以一次性还剩余本金，未到期的手续费不再收取。"
            "如分期后账单金额有误，我们会在3个工作日内为您核对。",
        ],
        [
            "查询账单或交易是否满足分期条件",
            "向客户说明可选期数、手续费和免息规则",
            "协助客户在页面办理分期或提前结清",
            "分期金额有误的，提交账务核对",
        ],
        "",
        "3个工作日内", 72,
        ["分期", "免息", "分期手续费", "提前结清"],
    ),
    (
        "repay", "bank.card", 1,
        ["还款", "还钱", "账单", "还了", "已还", "出账", "还款日", "延期", "提前还", "结清", "到期"],
        "客户咨询<P>的还款方式、还款日、还款后账单未更新或提前还款。",
        [
            "您好，感谢您的耐心。您<P>本期账单{金额}元可以在最后还款日前"
            "使用余额、余额宝或银行卡还款，也可以开通自动还款。"
            "还款后额度一般实时恢复，账单状态最晚2小时内更新。",
            "您好，我们已查询到您{日期}的还款记录。<P>还款成功后账单会在2小时内更新，"
            "提前还款按实际使用天数计费。如账单显示仍未还清，请您不要重复还款，"
            "我们会在1个工作日内核对，多还的部分会退回您的账户。",
        ],
        [
            "查询账单金额、还款日和还款记录",
            "核对还款是否成功入账及冲抵的账单期数",
            "账单未更新的，提交账务核对",
            "多还的金额退回客户原账户",
            "指导客户开通或修改自动还款",
        ],
        "重复还款的金额原路退回",
        "1个工作日内", 24,
        ["还款", "账单", "提前还款", "自动还款"],
    ),
    (
        "limit", "bank.card", 1,
        ["额度", "提额", "降额", "临时额度", "限额"],
        "客户对<P>额度被降低、无法提额、临时额度或可用额度不符有疑问。",
        [
            "您好，理解您对额度变化的关心。<P>的额度由系统根据您的使用和还款情况、"
            "账户活跃度等综合评估，会定期调整。保持按时还款、多使用并完善个人信息，"
            "有助于提升额度。我们已为您登记额度复评申请，3个工作日内反馈结果。",
            "您好，您的<P>可用额度为总额度减去未还金额；退款、还款到账后额度会相应恢复。"
            "临时额度有有效期，到期后需与本期账单一起还清。"
            "如您看到的可用额度与此不符，我们会在1个工作日内为您核对。",
        ],
        [
            "查询总额度、可用额度、临时额度和近期调额记录",
            "向客户解释额度评估规则和恢复规则",
            "可用额度不符的，提交账务核对",
            "客户要求提额的，登记复评申请",
        ],
        "",
        "3个工作日内", 72,
        ["额度", "提额", "降额", "临时额度"],
    ),
    (
        "card", "bank.card", 1,
        ["银行卡", "储蓄卡", "信用卡", "绑定", "绑卡", "解绑", "换卡", "绑了"],
        "客户在<P>绑定、解绑、更换银行卡失败，或银行卡还款、付款不成功。",
        [
            "您好，给您添麻烦了。绑定银行卡需要卡的开户名与账户实名一致，"
            "并使用在银行预留的手机号接收验证码。您尾号{卡号后四位}的卡如仍绑定失败，"
            "请提供失败提示，我们会在1个工作日内帮您核查。",
            "您好，您可以在“我的-银行卡”中管理<P>使用的银行卡，解绑后自动还款会改用余额扣款。"
            "尾号{卡号后四位}的卡如提示不支持，可能是银行限额或卡片状态异常，"
            "我们会在1个工作日内联系银行核实。",
        ],
        [
            "查询银行卡绑定状态和失败原因代码",
            "核对持卡人姓名、身份证和银行预留手机号",
            "卡片状态或限额问题的，联系发卡行核实",
            "指导客户重新绑定或更换默认扣款卡",
        ],
        "",
        "1个工作日内", 24,
        ["绑卡失败", "解绑银行卡", "银行卡", "换卡"],
    ),
    (
        "pay", "ecom.payment", 2,
        ["付款", "支付", "付不了", "用不了", "不能用", "扫码", "淘宝", "天猫", "订单", "购物", "买东西"],
        "客户用<P>付款失败、付款成功但订单显示未支付，或部分商家不能使用<P>。",
        [
            "您好，非常抱歉影响了您的购物。您{日期}的订单{订单号}使用<P>付款未成功，"
            "可能是单笔限额、商家不支持或网络超时。如已扣款但订单显示未支付，"
            "款项{金额}元会在1个工作日内原路退回，或由我们协调商家为您补单。",
            "您好，部分商家或商品类别暂不支持<P>付款，页面会提示更换付款方式。"
            "如您付款时已扣款但订单{订单号}仍显示待付款，请不要重复付款，"
            "我们会在1个工作日内核实并退回或补单。",
        ],
        [
            "查询支付订单状态、失败原因和商家签约情况",
            "已扣款未成单的，联系商家补单或发起原路退款",
            "向客户说明限额和不支持的场景",
            "处理完成后通知客户并结单",
        ],
        "已扣款未成单的全额退回",
        "1个工作日内", 24,
        ["付款失败", "扣款未成单", "不能付款", "订单未支付"],
    ),
    (
        "open", "general", 1,
        ["开通", "关闭", "注销", "开不了", "申请", "激活", "没有了", "怎么没有", "不见了", "邀请"],
        "客户咨询<P>的开通条件、入口消失、关闭或注销。",
        [
            "您好，感谢您的咨询。<P>由系统根据账户的实名情况、使用习惯和信用情况综合评估开通，"
            "暂时无法开通并不代表信用有问题，保持良好的使用记录后会定期重新评估。"
            "关闭或注销前需先还清全部欠款，关闭后不影响您的其他服务。",
            "您好，<P>入口暂时不见了，通常是综合评估后暂不提供服务，或客户端版本过低。"
            "您可以先升级到最新版本再查看；如仍无法使用，我们会在3个工作日内为您提交复核。",
        ],
        [
            "查询开通状态、评估结果和入口展示规则",
            "向客户说明开通条件和重新评估周期",
            "客户要求关闭或注销的，确认已结清后办理",
            "入口异常的，提交技术排查",
        ],
        "",
        "3个工作日内", 72,
        ["开通", "关闭", "注销", "入口不见"],
    ),
    (
        "verify", "general", 1,
        ["芝麻", "实名", "认证", "身份证", "密码", "验证码", "手机号", "人脸"],
        "客户在<P>的实名认证、密码、验证码或芝麻信用方面遇到问题。",
        [
            "您好，给您添麻烦了。为保障账户安全，使用<P>需要完成实名认证，"
            "身份证需在有效期内。验证码会发送到{手机号}，"
            "如长时间收不到，可以尝试语音验证码；我们也会在1个工作日内帮您核查。",
            "您好，支付密码忘记时可以通过“设置-支付设置-重置支付密码”找回，"
            "需要验证身份信息和人脸。请您不要把密码和验证码告诉任何人。"
            "如重置失败，我们会在1个工作日内协助您处理。",
        ],
        [
            "核对实名信息和身份证有效期",
            "查询验证码发送记录和手机号状态",
            "指导客户重置密码或更新实名资料",
            "自助处理失败的，提交人工审核",
        ],
        "",
        "1个工作日内", 24,
        ["实名认证", "忘记密码", "收不到验证码", "芝麻信用"],
    ),
    (
        "other", "general", 1,
        [],
        "客户对<P>的功能、规则或使用方法有疑问。",
        [
            "您好，感谢您的咨询。关于<P>的这个问题，我们已为您记录，"
            "您可以在<P>页面的“帮助中心”查看详细规则。"
            "如需进一步核实您的账户情况，我们会在1个工作日内给您答复。",
            "您好，您的问题我们已经收到。<P>的具体规则以页面公示为准，"
            "我们会为您核对账户情况，1个工作日内回复您。给您带来的不便敬请谅解。",
        ],
        [
            "确认客户咨询的功能和账户情况",
            "查询相关规则并向客户解释",
            "无法当场解答的，提交专员处理",
            "1个工作日内回复客户并结单",
        ],
        "",
        "1个工作日内", 24,
        ["使用咨询", "规则", "怎么用"],
    ),
]

# Words that keep a question out of a topic it would otherwise match ("余额宝转不进去，怎么还借呗"
# is about repaying, not a transfer).
EXCLUDE = {
    "disburse": ["还款", "还借呗", "还花呗", "还网商贷", "还钱"],
}
ANGER = ["投诉", "骗", "坑", "垃圾", "欺诈", "报警", "曝光", "起诉"]
TRADITIONAL = set("唄為麼還開額費錢這嗎訂單貸戶碼銀帳與個們説說請問後會還")
LEADING = re.compile(r"^(请问一下|请问|你好|您好|咨询一下|问一下|我想问一下|我想问|问下|想问下|想问)[，,：:\s]*")
TRAILING = "？?。！!，,~～.、 ；;：:"
CLAUSE = re.compile(r"[，,。？?！!；;]")
HAN = re.compile(r"[\u4e00-\u9fff]")


def clean(q):
    """A question as a title, or None when it is unusable."""
    if "*" in q or any(c in TRADITIONAL for c in q):
        return None
    q = q.replace("\u3000", " ").replace("{", "").replace("}", "")
    q = "".join(c for c in q if c >= " ").strip()
    q = LEADING.sub("", q)
    q = re.sub(r"\s+", "，", q)
    q = q.strip(TRAILING)
    if len(q) > 28:
        m = CLAUSE.search(q)
        q = q[: m.start()].strip(TRAILING) if m else ""
    if not 6 <= len(q) <= 28 or len(HAN.findall(q)) < 5:
        return None
    return q


def dedupe_key(title):
    k = re.sub(r"[^\u4e00-\u9fffA-Za-z0-9]", "", title)
    for w in ("蚂蚁", "我的", "我", "请问", "一下", "了", "吗", "呢", "的"):
        k = k.replace(w, "")
    return k


def product_of(q):
    for name, words in PRODUCTS:
        if any(w in q for w in words):
            return name
    return DEFAULT_PRODUCT


def topic_of(q):
    for t in TOPICS:
        if any(w in q for w in EXCLUDE.get(t[0], ())):
            continue
        if not t[3] or any(w in q for w in t[3]):
            return t
    return TOPICS[-1]


def read_afqmc(path):
    """Questions in file order: [(question, paired question, label)]."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[2] not in ("0", "1"):
                sys.exit(f"kb_templates: {path}:{n}: expected s1<TAB>s2<TAB>label")
            s1, s2, label = parts
            out.append((s1, s2, label == "1"))
            out.append((s2, s1, label == "1"))
    return out


def candidates(rows):
    """{topic name: [(title, paired title or None)]}, each title once, in file order."""
    by_topic = {t[0]: [] for t in TOPICS}
    seen = {}
    for q, pair, same in rows:
        title = clean(q)
        if title is None:
            continue
        k = dedupe_key(title)
        if k in seen:
            continue
        seen[k] = True
        other = clean(pair) if same else None
        if other is not None and dedupe_key(other) == k:
            other = None
        by_topic[topic_of(title)[0]].append((title, other))
    return by_topic


def template(n, title, other, rng):
    topic = topic_of(title)
    name, category, severity, words, cond, texts, steps, comp, deadline, hours, tags = topic
    product = asked = product_of(title)
    if name in PRODUCT_FIT and product not in PRODUCT_FIT[name][0]:
        product = PRODUCT_FIT[name][1]
    if any(w in title for w in ANGER):
        severity = min(severity + 1, 3)
    conditions = cond.replace("<P>", product)
    if other:
        conditions += f"客户常见的说法还有“{other}”。"
    k = rng.randint(2, min(4, len(steps)))
    picked = sorted(rng.sample(range(len(steps)), k))
    tag_list = [asked] if asked != DEFAULT_PRODUCT else []
    tag_list += [w for w in words if w in title][:2]
    tag_list += rng.sample(tags, 2)
    tag_list = list(dict.fromkeys(tag_list))[:5]
    rec = {
        "kind": "template",
        "key": f"gen-{n:05d}",
        "title": title,
        "category": category,
        "severity": severity,
        "conditions": conditions,
        "text": rng.choice(texts).replace("<P>", product),
        "steps": [steps[i] for i in picked],
        "compensation": comp,
        "deadline": deadline,
        "deadline_hours": hours,
        "tags": tag_list,
    }
    if not comp:
        del rec["compensation"]
    return rec


def write(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, required=True, help="templates in the result")
    ap.add_argument("--out", required=True, help="directory for templates.jsonl and cases.jsonl")
    ap.add_argument("--afqmc", default=DEFAULT_AFQMC, help=f"AFQMC TSV (default {DEFAULT_AFQMC})")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    a = ap.parse_args()

    with open(os.path.join(SAMPLE, "templates.jsonl"), encoding="utf-8") as f:
        sample_t = [l if l.endswith("\n") else l + "\n" for l in f if l.strip()]
    with open(os.path.join(SAMPLE, "cases.jsonl"), encoding="utf-8") as f:
        sample_c = [l if l.endswith("\n") else l + "\n" for l in f if l.strip()]
    if a.count < len(sample_t):
        sys.exit(f"kb_templates: --count {a.count}: the sample alone has {len(sample_t)} templates")
    need = a.count - len(sample_t)
    lines = list(sample_t)
    if need > 0:
        if not os.path.isfile(a.afqmc):
            sys.exit(f"kb_templates: AFQMC data not found: {a.afqmc}\n"
                     "(s1<TAB>s2<TAB>label questions; give its path with --afqmc)")
        by_topic = candidates(read_afqmc(a.afqmc))
        rng = random.Random(a.seed)
        queues = []
        for t in TOPICS:
            items = by_topic[t[0]]
            rng.shuffle(items)
            queues.append(items)
        total = sum(len(q) for q in queues)
        if total < need:
            sys.exit(f"kb_templates: --count {a.count}: only {total} distinct usable questions "
                     f"in {a.afqmc} (+{len(sample_t)} sample templates)")
        n, i = 0, 0
        while n < need:
            q = queues[i % len(queues)]
            i += 1
            if q:
                n += 1
                title, other = q.pop()
                rec = template(n, title, other, rng)
                lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    os.makedirs(a.out, exist_ok=True)
    write(os.path.join(a.out, "templates.jsonl"), lines)
    write(os.path.join(a.out, "cases.jsonl"), sample_c)
    print(f"kb_templates: {a.out}: {len(lines)} templates ({len(sample_t)} sample + "
          f"{len(lines) - len(sample_t)} generated, seed {a.seed}), {len(sample_c)} cases")


if __name__ == "__main__":
    main()
